"""The bundle manifest of a chosen variant: the agreed keys, deterministic, golden samples a device can replay."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from edgefleet.adapters import bundle
from edgefleet.compiler import candidates, hardware, manifest, selection
from edgefleet.core import tensors
from edgefleet.testing import models
from edgefleet.testing.compile_fixtures import target


def build(model: bytes, feed: dict[str, np.ndarray]) -> dict[str, object]:
    variant = candidates.Variant(selection.Recipe("fp32", "fp32", "fp32"), model, {"b": [1], "a": None}, None, 0.1)
    candidate = candidates.candidate(variant, selection.Latency(1.0, 1.2, (1.0,)))
    choice = selection.choose("regression", [candidate], selection.Budget(0.01, 0.01), "fp32")
    return manifest.build(
        source=model,
        target=target("fp32"),
        task="regression",
        model_name="linear",
        model_version="1.0.0",
        target_hardware=hardware.Hardware("x86-host", frozenset({"avx2", "avx512_vnni", "not-a-feature"}), threads=2),
        chosen=variant,
        choice=choice,
        all_candidates=[candidate],
        evaluation=b"evaluation",
        calibration=None,
        eval_feed=feed,
        golden_samples=3,
    )


def test_manifest_is_deterministic_canonical_json_without_files() -> None:
    model = models.linear(3)
    feed = {"x": np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)}
    first, second = build(model, feed), build(model, feed)
    assert bundle.canonical_json(first) == bundle.canonical_json(second)  # no NaN, no timings, sorted options
    assert "files" not in first
    assert first["target"] == {
        "name": "x86-host",
        "features": ["avx2", "avx512_vnni"],
        "providers": ["CPUExecutionProvider"],
        "threads": 2,
    }
    assert first["compileOptions"]["variantOptions"] == {"a": None, "b": [1]}  # type: ignore[index]
    assert first["measurements"]["latencyP50Ms"] is None  # type: ignore[index]


def test_golden_samples_replay_on_the_chosen_model_within_the_precisions_tolerance() -> None:
    model = models.linear(3)
    feed = {"x": np.random.default_rng(1).standard_normal((8, 16)).astype(np.float32)}
    golden = build(model, feed)["golden"]
    assert golden["rtol"] == manifest.GOLDEN_TOLERANCE["fp32"][0]  # type: ignore[index]
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    samples = golden["samples"]  # type: ignore[index]
    assert len(samples) == 3
    for i, sample in enumerate(samples):
        x = tensors.decode(sample["inputs"]["x"])
        assert np.array_equal(x, feed["x"][i : i + 1])  # the first evaluation samples, in order
        (y,) = session.run(None, {"x": x})
        assert np.allclose(y, tensors.decode(sample["outputs"]["y"]), rtol=golden["rtol"], atol=golden["atol"])  # type: ignore[index]
