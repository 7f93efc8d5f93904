"""Types shared by every edgefleet resource: the base model, label selectors and conditions.

Every API type is a frozen pydantic model with camelCase aliases, so the same class parses a manifest, a live
object from the API server and a test fixture. The CRD schemas in ``crds/`` are generated from these classes
(:mod:`edgefleet.api.crd`), which makes the pydantic models the contract. Constraints that the API server also
enforces are written once, as ``Field`` constraints or ``x-kubernetes-validations`` CEL rules attached through
``json_schema_extra``, and mirrored by a pydantic validator where CEL is involved.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

GROUP = "edgefleet.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

LABEL_SITE = "edgefleet.io/site"
LABEL_LINE = "edgefleet.io/line"
LABEL_HARDWARE_CLASS = "edgefleet.io/hardware-class"

# Kubernetes object name (DNS-1123 subdomain, restricted to a label here because names end up in labels too).
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# semver 2.0.0, https://semver.org/#is-there-a-suggested-regular-expression-regex-to-check-a-semver-string
SEMVER = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
SHA256_HEX = r"^[a-f0-9]{64}$"
DIGEST = r"^sha256:[a-f0-9]{64}$"
CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"

Name = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]


def list_map(key: str, max_items: int) -> Any:
    """Field constraints of a Kubernetes list-map keyed by ``key`` (server-side apply merges entries by key)."""
    return Field(
        max_length=max_items,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]},
    )


def require_unique(names: list[str], what: str) -> None:
    """Raise ValueError naming the duplicates when ``names`` repeats (pure)."""
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} must be unique (duplicate: {', '.join(dupes)})")


def _alias(name: str) -> str:
    return to_camel(name)


class ApiModel(BaseModel):
    """Base of every API type: frozen, camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        alias_generator=AliasGenerator(alias=_alias),
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """Serialise with camelCase keys, leaving out unset optional fields (what the API server stores)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class LabelSelectorRequirement(ApiModel):
    """One set-based requirement of a label selector (Kubernetes ``matchExpressions`` entry)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
                    "message": "values must be non-empty for In/NotIn and empty for Exists/DoesNotExist",
                }
            ]
        }
    )

    key: Annotated[str, Field(max_length=317, pattern=LABEL_KEY, description="The label key.")]
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(description="How the key relates to the values.")
    values: list[Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]] | None = Field(
        default=None,
        max_length=64,
        description="Values for In and NotIn; must be empty for Exists and DoesNotExist.",
    )

    @model_validator(mode="after")
    def _values_match_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"values must be non-empty when operator is {self.operator}")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"values must be empty when operator is {self.operator}")
        return self


class LabelSelector(ApiModel):
    """A Kubernetes label selector. An empty selector matches every device."""

    match_labels: (
        dict[
            Annotated[str, Field(max_length=317, pattern=LABEL_KEY)],
            Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)],
        ]
        | None
    ) = Field(default=None, max_length=64, description="Labels that must all be present with these values.")
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, max_length=32, description="Set-based requirements; all must hold."
    )

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether ``labels`` satisfy this selector (pure).

        >>> LabelSelector(match_labels={"a": "1"}).matches({"a": "1", "b": "2"})
        True
        """
        for key, value in (self.match_labels or {}).items():
            if labels.get(key) != value:
                return False
        for req in self.match_expressions or []:
            present = req.key in labels
            if req.operator == "In" and labels.get(req.key) not in (req.values or []):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in (req.values or []):
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """A Kubernetes-convention condition (``metav1.Condition``)."""

    type: Annotated[str, Field(max_length=316, pattern=r"^([a-z0-9.-]+/)?[A-Za-z][A-Za-z0-9_]*$")] = Field(
        description="Condition type, e.g. Ready, Reconciling, Stalled."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: Annotated[str, Field(min_length=1, max_length=1024, pattern=CONDITION_REASON)] = Field(
        description="CamelCase machine-readable reason for the last transition."
    )
    message: Annotated[str, Field(max_length=32768)] = Field(
        default="", description="Human-readable details about the transition."
    )
    last_transition_time: dt.datetime = Field(
        description="When status last changed (not when reason or message changed)."
    )
    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="The metadata.generation this condition was computed from."
    )


class ObjectMeta(ApiModel):
    """The subset of ``metav1.ObjectMeta`` that edgefleet reads; everything else is kept by the API server."""

    model_config = ConfigDict(extra="ignore")

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]
    namespace: Annotated[str, Field(max_length=63, pattern=DNS_LABEL)] | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    generation: int | None = None
    resource_version: str | None = None
    uid: str | None = None
    creation_timestamp: dt.datetime | None = None
    deletion_timestamp: dt.datetime | None = None
    finalizers: list[str] | None = None
