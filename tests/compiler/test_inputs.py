"""Hostile or mismatched inputs fail with a message that says what and where, never a crash."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.compiler import datasets
from edgefleet.core import errors
from edgefleet.testing import examples
from edgefleet.testing.compile_fixtures import compile_example, load_example, target


def test_pickled_arrays_are_refused() -> None:
    buf = io.BytesIO()
    np.savez(buf, image=np.array([{"x": 1}], dtype=object))
    with pytest.raises(datasets.DatasetError, match="without pickled objects"):
        datasets.load(buf.getvalue())


def test_zip_bomb_is_refused_before_unpacking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "MAX_DATASET_BYTES", 1_000_000)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("image.npy", b"\0" * 1_000_001)  # deflates to about 1 kB
    assert len(out.getvalue()) < 10_000
    with pytest.raises(datasets.DatasetError, match="unpacks to"):
        datasets.load(out.getvalue())


def test_sample_counts_must_agree() -> None:
    data = examples.npz_bytes({"image": np.zeros((3, 1, 8, 8), np.float32), "labels": np.zeros(2, np.int64)})
    with pytest.raises(datasets.DatasetError, match="disagree on the sample count"):
        datasets.load(data)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"pixels": np.zeros((2, 1, 8, 8), np.float32)}, "lacks an array for model input 'image'"),
        ({"image": np.zeros((2, 64), np.float32)}, "has rank 2, the model input wants rank 4"),
        ({"image": np.zeros((2, 1, 8, 9), np.float32)}, r"wants \['batch', 1, 8, 8\] \(axis 3\)"),
    ],
)
def test_evaluation_set_must_fit_the_model(
    arrays: dict[str, np.ndarray], message: str, signing_key: ed25519.Ed25519PrivateKey
) -> None:
    example = load_example("digits-cnn")
    bad = type(example)(example.name, example.task, example.model, examples.npz_bytes(arrays), example.calibration)
    with pytest.raises(errors.InvalidSpecError, match=message) as info:
        compile_example(bad, signing_key, target("fp32"))
    assert "compile target 'x86-host'" in str(info.value)
    assert info.value.reason == "InvalidInput"


def test_garbage_model_is_invalid_input(signing_key: ed25519.Ed25519PrivateKey) -> None:
    example = load_example("digits-cnn")
    bad = type(example)(example.name, example.task, b"\x08\x07garbage", example.evaluation, example.calibration)
    with pytest.raises(errors.InvalidSpecError, match="ONNX"):
        compile_example(bad, signing_key, target("fp32"))


def test_static_int8_without_calibration_is_refused(signing_key: ed25519.Ed25519PrivateKey) -> None:
    example = load_example("digits-cnn")
    from edgefleet.compiler import compiler

    with pytest.raises(errors.InvalidSpecError, match="needs a calibration set"):
        compiler.compile_model(
            example.model,
            target("int8", quantization={"method": "static"}),
            example.task,
            evaluation=example.evaluation,
            calibration=None,
            model_name="d",
            model_version="1.0.0",
            signing_key=signing_key,
        )
