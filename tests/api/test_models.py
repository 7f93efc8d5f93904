"""API models: examples parse, defaults apply, invariants hold (Hypothesis on the pure parts)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pydantic
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.api import common, edgedevice, modeldeployment

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "fleet-manifests"


def _load(name: str) -> dict[str, object]:
    value = yaml.safe_load((EXAMPLES / name).read_text())
    assert isinstance(value, dict)
    return value


def test_example_deployment_parses_with_defaults() -> None:
    md = modeldeployment.ModelDeployment.model_validate(_load("base/vibration-anomaly.yaml"))
    assert md.spec.model.task == "anomaly-score"
    assert md.spec.rollout.success_threshold == 0.8  # default from the issue
    assert md.spec.rollback.automatic is True
    assert md.spec.compile.targets[0].accuracy_budget.max_relative_error == 0.005
    assert md.spec.rollout.max_unavailable == 2


def test_round_trip_keeps_camel_case() -> None:
    md = modeldeployment.ModelDeployment.model_validate(_load("base/weld-defect-classifier.yaml"))
    wire = md.to_wire()
    assert wire["spec"]["rollout"]["maxUnavailable"] == "20%"
    assert wire["spec"]["health"]["latencyP95Ms"] == 8
    assert modeldeployment.ModelDeployment.model_validate(wire) == md


def test_models_are_frozen() -> None:
    md = modeldeployment.ModelDeployment.model_validate(_load("base/vibration-anomaly.yaml"))
    with pytest.raises(pydantic.ValidationError):
        md.spec.paused = True  # type: ignore[misc]


@pytest.mark.parametrize(
    "uri",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/m.onnx",
        "https://user:pw@models.example.com/m.onnx",
        "https://models.example.com/../../etc/passwd",
        "http://metadata.google.internal/computeMetadata/v1/",
    ],
)
def test_hostile_source_uris_are_rejected(uri: str) -> None:
    with pytest.raises(ValueError):
        modeldeployment.check_fetchable_uri(uri)


@given(st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=8))
def test_steps_accept_exactly_strictly_increasing_weights_ending_at_100(weights: list[int]) -> None:
    steps = [{"setWeight": w} for w in weights]
    ok = all(b > a for a, b in itertools.pairwise(weights)) and weights[-1] == 100
    try:
        modeldeployment.RolloutSpec.model_validate({"steps": steps})
    except pydantic.ValidationError:
        assert not ok
    else:
        assert ok


label = st.sampled_from(["a", "b", "c"])
labels = st.dictionaries(st.sampled_from(["k1", "k2", "k3"]), label, max_size=3)


@given(labels, labels)
def test_match_labels_selector_semantics(selector: dict[str, str], device: dict[str, str]) -> None:
    sel = common.LabelSelector(match_labels=selector)
    assert sel.matches(device) == all(device.get(k) == v for k, v in selector.items())


def test_edge_device_rejects_duplicate_model_names() -> None:
    entry = {
        "name": "weld",
        "deployment": "weld",
        "version": "1.0.0",
        "revision": "1.0.0-a",
        "artifact": {
            "uri": "http://127.0.0.1:1/a",
            "digest": "sha256:" + "0" * 64,
            "sizeBytes": 10,
            "precision": "fp32",
        },
    }
    with pytest.raises(pydantic.ValidationError, match="model names must be unique"):
        edgedevice.EdgeDeviceSpec.model_validate({"models": [entry, entry]})
