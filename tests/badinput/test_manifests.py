"""Malformed and hostile manifests: every case ends in a clear, positioned error; nothing crashes or hangs."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefleet.adapters import manifests
from edgefleet.api import edgedevice, modeldeployment
from edgefleet.core import validation
from edgefleet.testing.badinput import COUNTS as tried

ROOT = Path(__file__).resolve().parents[2]
VALID = yaml.safe_load((ROOT / "examples" / "fleet-manifests" / "base" / "weld-defect-classifier.yaml").read_text())

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += _paths(child, (*prefix, i))
    return out


ALL_PATHS = [p for p in _paths(VALID) if p]


def _mutate(doc: dict[str, Any], path: tuple[Any, ...], replacement: Any, delete: bool) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node = out
    for part in path[:-1]:
        node = node[part]
    if delete and isinstance(node, dict):
        node.pop(path[-1], None)
    else:
        node[path[-1]] = replacement
    return out


def _check(diagnostics: list[validation.Diagnostic]) -> None:
    for d in diagnostics:
        assert d.message and d.line >= 1 and d.column >= 1, d


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ALL_PATHS), json_value, st.booleans())
def test_fuzzed_model_deployments_give_positioned_errors(path: tuple[Any, ...], replacement: Any, delete: bool) -> None:
    tried["fuzzed ModelDeployment fields"] += 1
    mutated = _mutate(VALID, path, replacement, delete)
    text = yaml.safe_dump(mutated)
    documents = manifests.load_text(text, "fuzz.yaml")
    _check(validation.validate(documents))  # cross-object rules may add errors; they must be positioned too
    _, per_object = validation.parse_object(documents[0])
    _check(per_object)
    errors = [d for d in per_object if d.severity == "error"]
    if path[0] in ("apiVersion", "kind"):
        return  # the model defaults these for constructing objects in code; manifests must spell them out
    try:
        modeldeployment.ModelDeployment.model_validate(mutated)
        parses = True
    except ValueError:
        parses = False
    assert parses == (not errors), (path, replacement, delete, errors)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["apiVersion", "kind", "metadata", "spec", "status"]), json_value))
def test_fuzzed_edge_devices_never_crash(doc: dict[str, Any]) -> None:
    tried["fuzzed EdgeDevice documents"] += 1
    doc = {"apiVersion": "edgefleet.io/v1alpha1", "kind": "EdgeDevice", **doc}
    text = yaml.safe_dump(doc)
    _check(validation.validate(manifests.load_text(text, "fuzz.yaml")))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_is_yaml_or_a_clear_error(text: str) -> None:
    tried["arbitrary text files"] += 1
    try:
        documents = manifests.load_text(text, "any.yaml")
    except manifests.ManifestError as exc:
        assert str(exc).startswith("any.yaml:")
        return
    _check(validation.validate(documents))


def _bomb(levels: int, width: int, kind: str) -> str:
    if kind == "list":
        lines = ["a0: &a0 [" + ",".join(["lol"] * width) + "]"]
        lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    else:
        lines = ["a0: &a0 {" + ",".join(f"k{j}: lol" for j in range(width)) + "}"]
        lines += [
            f"a{i}: &a{i} {{" + ",".join(f"k{j}: *a{i - 1}" for j in range(width)) + "}" for i in range(1, levels)
        ]
    return "\n".join(lines) + "\n"


HOSTILE_TEXTS = {
    "list anchor bomb": _bomb(9, 9, "list"),
    "map anchor bomb": _bomb(9, 9, "map"),
    "wide anchor bomb": _bomb(4, 200, "list"),
    "merge-key bomb": "base: &b {"
    + ",".join(f"k{i}: v" for i in range(50))
    + "}\n"
    + "".join(f"m{i}: &m{i}\n  <<: *{'b' if i == 0 else f'm{i - 1}'}\n  x{i}: [*b, *b, *b, *b]\n" for i in range(400)),
    "deep nesting": "a: " + "[" * 5000 + "]" * 5000 + "\n",
    "python object tag": "!!python/object/apply:os.system ['touch /tmp/pwned']\n",
    "python name tag": "a: !!python/name:os.system\n",
    "unknown tag": "a: !Ref foo\n",
    "non-scalar key": "? [a, b]\n: c\n",
    "tab indentation": "a:\n\tb: c\n",
    "binary garbage": "\x00\x01\x02\xff",
    "unterminated quote": 'a: "abc\n',
    "duplicate keys": "a: 1\na: 2\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXTS))
def test_hostile_yaml_fails_fast_with_a_clear_error(name: str) -> None:
    tried["hostile YAML files"] += 1
    began = time.monotonic()
    with pytest.raises(manifests.ManifestError) as info:
        manifests.load_text(HOSTILE_TEXTS[name], f"{name}.yaml")
    assert time.monotonic() - began < 10, "must not hang"
    assert str(info.value).startswith(f"{name}.yaml:")
    assert len(info.value.message) > 5


def test_oversized_inputs(tmp_path: Path) -> None:
    cases = {
        "9 MB file": "a: " + "x" * (9 * 1024 * 1024),
        "many documents": "---\na: 1\n" * 20_001,
    }
    for text in cases.values():
        tried["oversized inputs"] += 1
        path = tmp_path / "big.yaml"
        path.write_text(text)
        with pytest.raises(manifests.ManifestError, match=r"larger than|over|more than"):
            manifests.load_file(path)
    tried["oversized inputs"] += 1
    long_name = dict(copy.deepcopy(VALID), metadata={"name": "x" * 100_000})
    diagnostics = validation.validate(manifests.load_text(yaml.safe_dump(long_name), "long.yaml"))
    assert any(d.field == "metadata.name" and "at most 253" in d.message for d in diagnostics)


HOSTILE_URIS = [
    "file:///etc/passwd",
    "file://localhost/var/lib/edgefleet/key",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://169.254.170.2/v2/credentials",
    "http://[fe80::a9fe:a9fe]/latest",
    "http://metadata.google.internal/computeMetadata/v1/?recursive=true",
    "http://metadata/computeMetadata/v1/",
    "https://user:secret@models.example.com/m.onnx",
    "https://models.example.com/a/../../../etc/passwd",
    "https://models.example.com/%2e%2e/..//etc",
    "gopher://models.example.com:70/_",
    "javascript:alert(1)",
    "ftp://models.example.com/m.onnx",
    "//models.example.com/m.onnx",
    "https://models.example.com/ m.onnx",
    "https://" + "a" * 3000 + ".com/m.onnx",
]


@pytest.mark.parametrize("uri", HOSTILE_URIS, ids=range(len(HOSTILE_URIS)))
def test_hostile_uris_are_rejected_everywhere(uri: str) -> None:
    tried["hostile URIs"] += 1
    model = dict(VALID["spec"]["model"], uri=uri)
    with pytest.raises(ValueError):
        modeldeployment.ModelSource.model_validate(model)
    with pytest.raises(ValueError):
        modeldeployment.DatasetRef.model_validate({"uri": uri, "sha256": "0" * 64})
    artifact = {"uri": uri, "digest": "sha256:" + "0" * 64, "sizeBytes": 1, "precision": "fp32"}
    with pytest.raises(ValueError):
        edgedevice.ArtifactRef.model_validate(artifact)
