"""Generate the CustomResourceDefinitions in ``crds/`` from the pydantic API models.

The pydantic models are the contract; the CRDs are derived from them so the two cannot drift
(``tests/api/test_crd.py`` regenerates and compares). Pydantic emits JSON Schema 2020-12 with ``$ref``s and
``anyOf`` unions; Kubernetes wants a *structural* OpenAPI v3 schema: every node typed, no ``$ref``, no
``anyOf`` except for int-or-string, ``exclusiveMinimum`` as a boolean. :func:`structural` does that conversion.

Run ``python -m edgefleet.api.crd crds/`` (or ``make crds``) after changing a model.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from edgefleet.api import common, edgedevice, modeldeployment

_DROP = {"title", "propertyNames", "$defs", "discriminator"}


def structural(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Convert one pydantic JSON schema node into a structural OpenAPI v3 node (pure).

    >>> structural({"anyOf": [{"type": "integer"}, {"type": "null"}], "title": "X"})
    {'type': 'integer'}
    """
    defs = schema.get("$defs", defs) or {}
    node = copy.deepcopy(schema)
    if "$ref" in node:
        ref = node.pop("$ref").rsplit("/", 1)[-1]
        target = copy.deepcopy(defs[ref])
        # Field-level keys (description, default, CEL rules) win over the referenced model's.
        target.update({k: v for k, v in node.items() if k not in ("$defs",)})
        node = target
    if "allOf" in node and len(node["allOf"]) == 1:
        inner = node.pop("allOf")[0]
        merged = dict(inner)
        merged.update(node)
        node = merged
        return structural(merged, defs)
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if node.get("default", 0) is None:
            node.pop("default")
        if len(options) == 1:
            inner = options[0]
            merged = dict(inner) if "$ref" not in inner else {"$ref": inner["$ref"]}
            for key, value in node.items():
                merged.setdefault(key, value) if key != "description" else merged.__setitem__(key, value)
            return structural(merged, defs)
        types = sorted(o.get("type", "") for o in options)
        if types == ["integer", "string"]:
            out: dict[str, Any] = {"x-kubernetes-int-or-string": True}
            out.update({k: v for k, v in node.items() if k not in _DROP})
            if "default" in out and isinstance(out.get("description"), str):
                out["description"] = with_default(out["description"], out["default"])
            return out
        raise ValueError(f"cannot express union {types} in a structural schema")
    if "const" in node:
        node["enum"] = [node.pop("const")]
        node.setdefault("type", "string")
    if node.get("default", 0) is None:
        node.pop("default")
    for key in list(node):
        if key in _DROP:
            node.pop(key)
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node and not isinstance(node[bound], bool):
            node[flag] = node.pop(bound)
            node[bound] = True
    if node.get("type") == "object" or "properties" in node:
        node["type"] = "object"
        props = node.get("properties", {})
        node["properties"] = {k: structural(v, defs) for k, v in props.items()} if props else node.pop("properties", {})
        if not node["properties"]:
            node.pop("properties")
        if "additionalProperties" in node:
            extra = node["additionalProperties"]
            if extra is False:
                node.pop("additionalProperties")
            elif isinstance(extra, dict):
                node["additionalProperties"] = structural(extra, defs)
        if "patternProperties" in node:
            # Structural schemas forbid patternProperties: keep the value schema, check key patterns with CEL.
            (pattern, value_schema), *_ = node.pop("patternProperties").items()
            node["additionalProperties"] = structural(value_schema, defs)
            node.setdefault("x-kubernetes-validations", []).append(
                {"rule": f"self.all(k, k.matches({_cel_string(pattern)}))", "message": "invalid label key"}
            )
        if "maxItems" in node:  # pydantic maps max_length on a dict to maxItems in some versions
            node["maxProperties"] = node.pop("maxItems")
    if node.get("type") == "array" and "items" in node:
        node["items"] = structural(node["items"], defs)
    if node.get("format") == "date-time":
        node["type"] = "string"
    if "default" in node and isinstance(node.get("description"), str):
        node["description"] = with_default(node["description"], node["default"])
    return node


def with_default(description: str, default: Any) -> str:
    """``description`` ending with the default, since ``kubectl explain`` prints descriptions, not defaults (pure).

    >>> with_default("Share of updated devices.", 0.8)
    'Share of updated devices. Default: 0.8.'
    >>> with_default("Graph format.", "auto"), with_default("Stop.", False)
    ('Graph format. Default: auto.', 'Stop. Default: false.')
    """
    if isinstance(default, bool):
        shown = "true" if default else "false"
    elif isinstance(default, (int, float, str)):
        shown = str(default)
    else:
        return description
    return f"{description.rstrip()} Default: {shown}."


def _cel_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _resource_schema(model: type[BaseModel], spec_required: bool) -> dict[str, Any]:
    full = model.model_json_schema(by_alias=True, mode="validation")
    defs = full.get("$defs", {})
    props = full["properties"]
    spec = structural(props["spec"], defs)
    status = structural(props["status"], defs)
    spec.pop("default", None)
    # Until the operator writes a status, the API server shows this default one (defaults apply on read too), so
    # kstatus, Flux and Argo CD read an object no operator has seen yet as "not yet reconciled" (observedGeneration
    # 0 < generation) rather than as a finished one (kstatus reads an object without status as Current).
    # EdgeDevices get none: a device that was never switched on must not hold a `wait` on its manifests.
    if model is modeldeployment.ModelDeployment:
        status["default"] = {"observedGeneration": 0}
    schema: dict[str, Any] = {
        "type": "object",
        "description": (model.__doc__ or "").strip(),
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion of this representation of the object.",
            },
            "kind": {"type": "string", "description": "Kind of the object."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    if spec_required:
        schema["required"] = ["spec"]
    return schema


def _crd(
    model: type[BaseModel],
    kind: str,
    plural: str,
    short: list[str],
    columns: list[dict[str, Any]],
    spec_required: bool,
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{common.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "edgefleet"},
        },
        "spec": {
            "group": common.GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
                "categories": ["edgefleet"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": common.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": _resource_schema(model, spec_required)},
                }
            ],
        },
    }


def _ready(json_path_prefix: str = ".status") -> dict[str, Any]:
    return {
        "name": "Ready",
        "type": "string",
        "jsonPath": f'{json_path_prefix}.conditions[?(@.type=="Ready")].status',
    }


def crds() -> dict[str, dict[str, Any]]:
    """All CRDs, keyed by the file name they live under in ``crds/`` (pure)."""
    md = _crd(
        modeldeployment.ModelDeployment,
        modeldeployment.KIND,
        modeldeployment.PLURAL,
        ["md"],
        [
            {"name": "Model", "type": "string", "jsonPath": ".spec.model.name"},
            {"name": "Version", "type": "string", "jsonPath": ".spec.model.version"},
            _ready(),
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {
                "name": "Step",
                "type": "integer",
                "jsonPath": ".status.currentStep",
                "description": "1-based number of the current rollout step",
            },
            {"name": "Targeted", "type": "integer", "jsonPath": ".status.devices.targeted"},
            {
                "name": "Updated",
                "type": "integer",
                "jsonPath": ".status.devices.updated",
                "description": "Devices on the revision being rolled out (status.devices.revision)",
            },
            {"name": "Healthy", "type": "integer", "jsonPath": ".status.devices.healthy"},
            {"name": "Unreachable", "type": "integer", "jsonPath": ".status.reachability.unreachable"},
            {"name": "Stable", "type": "string", "jsonPath": ".status.stableRevision"},
            {"name": "Canary", "type": "string", "jsonPath": ".status.canaryRevision"},
            {"name": "On-Stable", "type": "integer", "jsonPath": ".status.devices.stable", "priority": 1},
            {
                "name": "Message",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
                "priority": 1,
            },
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        spec_required=True,
    )
    ed = _crd(
        edgedevice.EdgeDevice,
        edgedevice.KIND,
        edgedevice.PLURAL,
        ["ed"],
        [
            {"name": "Site", "type": "string", "jsonPath": ".metadata.labels.edgefleet\\.io/site"},
            {"name": "Line", "type": "string", "jsonPath": ".metadata.labels.edgefleet\\.io/line"},
            {
                "name": "Hardware",
                "type": "string",
                "jsonPath": ".metadata.labels.edgefleet\\.io/hardware-class",
            },
            _ready(),
            {"name": "Reason", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].reason'},
            {"name": "Models", "type": "string", "jsonPath": ".status.models[*].activeVersion"},
            {"name": "Agent", "type": "string", "jsonPath": ".status.agentVersion", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        spec_required=False,
    )
    return {
        f"{common.GROUP}_{modeldeployment.PLURAL}.yaml": md,
        f"{common.GROUP}_{edgedevice.PLURAL}.yaml": ed,
    }


def render(crd: dict[str, Any]) -> str:
    """Serialise one CRD the way it is stored in ``crds/`` (pure)."""
    header = "# Generated from src/edgefleet/api by `make crds`. Do not edit by hand.\n"
    return header + yaml.safe_dump(crd, sort_keys=False, width=120)


def write(directory: Path) -> list[Path]:
    """Write every CRD plus a kustomization into ``directory``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, crd in crds().items():
        path = directory / name
        path.write_text(render(crd))
        written.append(path)
    # Named "Kustomization" (no extension) so that `kubectl apply -f crds/` skips it while `kubectl apply -k`
    # and kustomize overlays that list `crds/` as a resource still find it.
    kustomization = directory / "Kustomization"
    kustomization.write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
        + "".join(f"  - {p.name}\n" for p in written)
    )
    return [*written, kustomization]


def write_chart_copies(chart_crds: Path) -> list[Path]:
    """The same CRDs in a Helm chart's ``crds/`` directory (Helm installs them before the chart's templates)."""
    written = []
    for name, crd in crds().items():
        path = chart_crds / name
        path.write_text(render(crd))
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "crds")
    for path in write(target):
        print(f"wrote {path}")
    chart = target.resolve().parent / "charts" / "edgefleet" / "crds"
    if chart.is_dir():
        for path in write_chart_copies(chart):
            print(f"wrote {path}")
