"""The example models are reproducible: rebuilding them gives the committed bytes."""

from __future__ import annotations

import hashlib

import numpy as np
import onnxruntime as ort
import pytest

from edgefleet.compiler import datasets
from edgefleet.testing import examples
from edgefleet.testing.compile_fixtures import EXAMPLES


@pytest.mark.slow  # trains both models with numpy: ~10 s on an idle 2-core machine
@pytest.mark.parametrize("name", sorted(examples.BUILDERS))
def test_rebuild_matches_committed_files(name: str) -> None:
    built = examples.BUILDERS[name]()
    directory = EXAMPLES / name
    committed = {
        "model.onnx": (directory / "model.onnx").read_bytes(),
        "calibration.npz": (directory / "calibration.npz").read_bytes(),
        "evaluation.npz": (directory / "evaluation.npz").read_bytes(),
    }
    rebuilt = {
        "model.onnx": built.model,
        "calibration.npz": examples.npz_bytes(built.calibration),
        "evaluation.npz": examples.npz_bytes(built.evaluation),
    }
    for file in committed:
        assert hashlib.sha256(rebuilt[file]).hexdigest() == hashlib.sha256(committed[file]).hexdigest(), file
    assert sum(len(v) for v in committed.values()) < 5 * 1024 * 1024


@pytest.mark.parametrize("name", sorted(examples.BUILDERS))
def test_examples_are_good_models(name: str) -> None:
    """The models learned their task, so fidelity numbers on them mean something."""
    directory = EXAMPLES / name
    session = ort.InferenceSession((directory / "model.onnx").read_bytes(), providers=["CPUExecutionProvider"])
    evaluation = datasets.load((directory / "evaluation.npz").read_bytes())
    inp = session.get_inputs()[0].name
    outputs = session.run(None, {inp: evaluation[inp]})
    labels = evaluation["labels"]
    if name == "digits-cnn":
        assert float(np.mean(outputs[0].argmax(1) == labels)) > 0.95
    else:
        score = outputs[1][:, 0]
        # every anomaly scores above the 99th percentile of normal windows
        assert float(np.mean(score[labels == 1] > np.percentile(score[labels == 0], 99))) > 0.95


def test_npz_bytes_is_deterministic_and_loadable() -> None:
    arrays = {"b": np.arange(6, dtype=np.float32).reshape(2, 3), "a": np.array([1, 2], dtype=np.int64)}
    data = examples.npz_bytes(arrays)
    assert data == examples.npz_bytes(dict(reversed(list(arrays.items()))))
    loaded = datasets.load(data)
    assert sorted(loaded) == ["a", "b"]
    assert np.array_equal(loaded["b"], arrays["b"])
