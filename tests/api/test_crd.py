"""The CRDs in crds/ are exactly what the pydantic models generate, and are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from edgefleet.api import crd

CRDS = Path(__file__).resolve().parents[2] / "crds"


@pytest.mark.parametrize("name", sorted(crd.crds()))
def test_committed_crd_matches_models(name: str) -> None:
    committed = (CRDS / name).read_text()
    assert committed == crd.render(crd.crds()[name]), f"crds/{name} drifted from src/edgefleet/api; run make crds"


def _walk(node: Any, path: str, problems: list[str]) -> None:
    if not isinstance(node, dict):
        return
    for banned in ("$ref", "anyOf", "allOf", "oneOf", "patternProperties", "title", "const"):
        if banned in node and not (banned == "anyOf" and node.get("x-kubernetes-int-or-string")):
            problems.append(f"{path}: {banned}")
    if "type" not in node and not node.get("x-kubernetes-int-or-string"):
        problems.append(f"{path}: no type")
    for key, child in (node.get("properties") or {}).items():
        _walk(child, f"{path}.{key}", problems)
    if isinstance(node.get("items"), dict):
        _walk(node["items"], f"{path}[]", problems)
    if isinstance(node.get("additionalProperties"), dict):
        _walk(node["additionalProperties"], f"{path}{{}}", problems)


@pytest.mark.parametrize("name", sorted(crd.crds()))
def test_schema_is_structural(name: str) -> None:
    doc = yaml.safe_load((CRDS / name).read_text())
    schema = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    problems: list[str] = []
    _walk(schema, "", problems)
    assert problems == []


def test_every_spec_field_is_documented() -> None:
    missing: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for key, child in (node.get("properties") or {}).items():
            documented = path.startswith((".spec", ".status")) or key in ("spec", "status")
            if documented and "description" not in child:
                missing.append(f"{path}.{key}")
            walk(child, f"{path}.{key}")
            if isinstance(child.get("items"), dict):
                walk(child["items"], f"{path}.{key}[]")

    for crd_doc in crd.crds().values():
        walk(crd_doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "")
    assert missing == []


def test_structural_turns_optional_into_plain_type() -> None:
    assert crd.structural({"anyOf": [{"type": "string", "maxLength": 3}, {"type": "null"}], "default": None}) == {
        "type": "string",
        "maxLength": 3,
    }


def test_structural_rejects_unrepresentable_unions() -> None:
    with pytest.raises(ValueError, match="structural"):
        crd.structural({"anyOf": [{"type": "boolean"}, {"type": "string"}]})
