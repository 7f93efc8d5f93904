"""Validate fleet manifests: everything the CRDs enforce, plus rules that span objects.

Pure: takes parsed :class:`~edgefleet.core.documents.Document` objects and returns :class:`Diagnostic` records;
reading files is the adapter's job. Per-object checks reuse the pydantic API models (the same contract the CRD
schemas are generated from), so ``edgefleet validate`` and the API server agree. Cross-object checks:

- the same kind/namespace/name defined twice;
- two ModelDeployments in one namespace deploying the same model name to selectors that can overlap
  (a device would be asked to run two versions of one model);
- compile targets of one ModelDeployment whose selectors can overlap (a device would match two variants);
- EdgeDevices without a hardware-class label (no compile target can match them reliably), as a warning.

Worked example::

    >>> from edgefleet.core.documents import Document, Position
    >>> doc = Document("a.yaml", 0, {"apiVersion": "v1", "kind": "ConfigMap"}, {(): Position(1, 1)})
    >>> validate([doc])
    []
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import pydantic

from edgefleet.api import common, edgedevice, modeldeployment
from edgefleet.api.common import LabelSelector
from edgefleet.core.documents import Document, FieldPath, format_path

Severity = Literal["error", "warning"]


@dataclasses.dataclass(frozen=True)
class Diagnostic:
    """One finding, positioned in its source file."""

    source: str
    line: int
    column: int
    field: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}:{self.column}"
        prefix = "" if self.severity == "error" else "warning: "
        return f"{where}: {prefix}{self.field + ': ' if self.field else ''}{self.message}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Parsed:
    """An edgefleet object that passed per-object validation, with the document it came from."""

    document: Document
    obj: modeldeployment.ModelDeployment | edgedevice.EdgeDevice

    @property
    def namespace(self) -> str:
        return self.obj.metadata.namespace or ""


KINDS: dict[str, type[modeldeployment.ModelDeployment] | type[edgedevice.EdgeDevice]] = {
    modeldeployment.KIND: modeldeployment.ModelDeployment,
    edgedevice.KIND: edgedevice.EdgeDevice,
}


def _diag(doc: Document, path: FieldPath, message: str, severity: Severity = "error") -> Diagnostic:
    pos = doc.position(path)
    return Diagnostic(doc.source, pos.line, pos.column, format_path(path), message, severity)


def _resolve_loc(value: Any, loc: Sequence[str | int], missing: bool) -> FieldPath:
    """Map a pydantic error location onto the document, dropping union-member tags (pure)."""
    path: list[str | int] = []
    current: Any = value
    for i, part in enumerate(loc):
        in_dict = isinstance(current, dict) and isinstance(part, str) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            current = current[part]
            path.append(part)
        elif isinstance(part, str) and missing and i == len(loc) - 1:
            path.append(part)
        elif isinstance(current, dict) and isinstance(part, str) and i == len(loc) - 1 and not missing:
            path.append(part)  # extra (unknown) field reported on its key
    return tuple(path)


_PATTERN_HINTS = {
    common.SEMVER: "must be a semantic version like 1.4.0",
    common.SHA256_HEX: "must be 64 lower-case hex characters (the file's sha256)",
    common.DIGEST: "must be sha256: followed by 64 lower-case hex characters",
    common.DNS_LABEL: "must be a DNS label: lower-case letters, digits and '-', starting and ending alphanumeric",
    modeldeployment.SOURCE_URI: "must be an http, https or oci URI",
    modeldeployment.HHMM: "must be a 24h time HH:MM",
    r"^(100|[1-9]?[0-9])%$": "must be a count >= 0 or a percentage from 0% to 100%",
    edgedevice.ARTIFACT_URI: "must be an http, https or oci URI",  # the same pattern as SOURCE_URI
}


def _message(error: Any) -> str:
    kind = error["type"]
    msg = str(error["msg"])
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown field (check the spelling against `kubectl explain`)"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if kind == "string_pattern_mismatch":
        hint = _PATTERN_HINTS.get(str((error.get("ctx") or {}).get("pattern")), msg)
        return f"{hint} (got {error.get('input')!r})"
    return msg


def parse_object(doc: Document) -> tuple[Parsed | None, list[Diagnostic]]:
    """Validate one edgefleet document against the API models (pure). Non-edgefleet kinds give ``(None, [])``."""
    value = doc.value
    if not isinstance(value, dict):
        return None, [_diag(doc, (), "a manifest must be a mapping with apiVersion, kind and metadata")]
    api_version, kind = value.get("apiVersion"), value.get("kind")
    if not isinstance(api_version, str) or not api_version:
        return None, [_diag(doc, ("apiVersion",), "is required (e.g. edgefleet.io/v1alpha1)")]
    if not isinstance(kind, str) or not kind:
        return None, [_diag(doc, ("kind",), "is required")]
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    if group != common.GROUP:
        return None, []
    if api_version != common.API_VERSION:
        return None, [_diag(doc, ("apiVersion",), f"unsupported version {api_version!r}; use {common.API_VERSION}")]
    model = KINDS.get(kind)
    if model is None:
        known = ", ".join(sorted(KINDS))
        return None, [_diag(doc, ("kind",), f"unknown kind {kind!r} in {common.GROUP} (known: {known})")]
    try:
        obj = model.model_validate(value)
    except pydantic.ValidationError as exc:
        by_path: dict[FieldPath, list[str]] = {}
        for error in exc.errors():
            path = _resolve_loc(value, error["loc"], missing=error["type"] == "missing")
            message = _message(error)
            if message not in by_path.setdefault(path, []):
                by_path[path].append(message)
        out = []
        for path, msgs in by_path.items():
            # int-or-string fields report one error per union member; the integer one only adds noise for strings.
            useful = [m for m in msgs if not m.startswith("Input should be a valid integer, unable to parse")] or msgs
            out.append(_diag(doc, path, " or ".join(useful)))
        return None, out
    diagnostics = []
    if value.get("status") is not None:
        diagnostics.append(_diag(doc, ("status",), "status is written by the system and ignored on apply", "warning"))
    return Parsed(doc, obj), diagnostics


def selectors_may_overlap(a: LabelSelector, b: LabelSelector) -> bool:
    """False only when no label set can satisfy both selectors (pure).

    >>> sel = LabelSelector.model_validate
    >>> selectors_may_overlap(sel({"matchLabels": {"hw": "x86"}}), sel({"matchLabels": {"hw": "arm"}}))
    False
    >>> selectors_may_overlap(sel({"matchLabels": {"hw": "x86"}}), sel({"matchLabels": {"line": "1"}}))
    True
    """
    exists: set[str] = set()
    absent: set[str] = set()
    allowed: dict[str, set[str]] = {}
    forbidden: dict[str, set[str]] = {}

    def allow(key: str, values: Iterable[str]) -> None:
        exists.add(key)
        allowed[key] = allowed[key] & set(values) if key in allowed else set(values)

    for sel in (a, b):
        for key, value in (sel.match_labels or {}).items():
            allow(key, [value])
        for req in sel.match_expressions or []:
            if req.operator == "In":
                allow(req.key, req.values or [])
            elif req.operator == "NotIn":
                forbidden.setdefault(req.key, set()).update(req.values or [])
            elif req.operator == "Exists":
                exists.add(req.key)
            else:
                absent.add(req.key)
    if exists & absent:
        return False
    return all(values - forbidden.get(key, set()) for key, values in allowed.items())


def _cross_object(parsed: list[Parsed]) -> list[Diagnostic]:
    diagnostics: list[Diagnostic] = []
    seen: dict[tuple[str, str, str], Parsed] = {}
    for item in parsed:
        key = (item.obj.kind, item.namespace, item.obj.metadata.name)
        first = seen.get(key)
        if first is not None:
            where = f"{first.document.source}:{first.document.position(('metadata', 'name')).line}"
            diagnostics.append(
                _diag(item.document, ("metadata", "name"), f"{key[0]} {key[2]!r} is already defined at {where}")
            )
        else:
            seen[key] = item
    deployments = [p for p in parsed if isinstance(p.obj, modeldeployment.ModelDeployment)]
    for i, item in enumerate(deployments):
        md = item.obj
        assert isinstance(md, modeldeployment.ModelDeployment)
        for other in deployments[:i]:
            om = other.obj
            assert isinstance(om, modeldeployment.ModelDeployment)
            if (
                other.namespace == item.namespace
                and om.spec.model.name == md.spec.model.name
                and om.metadata.name != md.metadata.name
                and selectors_may_overlap(om.spec.selector, md.spec.selector)
            ):
                diagnostics.append(
                    _diag(
                        item.document,
                        ("spec", "selector"),
                        f"overlaps the selector of ModelDeployment {om.metadata.name!r} "
                        f"({other.document.source}), which also deploys model {md.spec.model.name!r}; "
                        "a device would be asked to run two versions of one model - make the selectors disjoint",
                    )
                )
        targets = md.spec.compile.targets
        for j, target in enumerate(targets):
            for k in range(j):
                if selectors_may_overlap(targets[k].selector, target.selector):
                    diagnostics.append(
                        _diag(
                            item.document,
                            ("spec", "compile", "targets", j, "selector"),
                            f"overlaps the selector of compile target {targets[k].name!r}; a device would match two "
                            "variants - give each target a distinct hardware-class label",
                        )
                    )
    for item in parsed:
        if isinstance(item.obj, edgedevice.EdgeDevice):
            labels = item.obj.metadata.labels or {}
            if common.LABEL_HARDWARE_CLASS not in labels:
                diagnostics.append(
                    _diag(
                        item.document,
                        ("metadata", "labels")
                        if "labels" in item.document.value.get("metadata", {})
                        else ("metadata",),
                        f"has no {common.LABEL_HARDWARE_CLASS} label; compile targets cannot match it",
                        "warning",
                    )
                )
    return diagnostics


def validate(documents: Iterable[Document]) -> list[Diagnostic]:
    """All diagnostics for a set of documents, per object then across objects, in source order (pure)."""
    diagnostics: list[Diagnostic] = []
    parsed: list[Parsed] = []
    for doc in documents:
        item, found = parse_object(doc)
        diagnostics.extend(found)
        if item is not None:
            parsed.append(item)
    diagnostics.extend(_cross_object(parsed))
    return sorted(diagnostics, key=lambda d: (d.source, d.line, d.column))


def parse_all(documents: Iterable[Document]) -> tuple[list[Parsed], list[Diagnostic]]:
    """Parsed edgefleet objects plus every diagnostic (pure); callers refuse to act when any is an error."""
    docs = list(documents)
    diagnostics = validate(docs)
    parsed = [p for p in (parse_object(d)[0] for d in docs) if p is not None]
    return parsed, diagnostics


__all__ = ["Diagnostic", "Parsed", "parse_all", "parse_object", "selectors_may_overlap", "validate"]
