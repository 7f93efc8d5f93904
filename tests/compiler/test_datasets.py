"""Hostile or malformed datasets fail with a message that says which array and why, never a crash."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from edgefleet.compiler import datasets, measurement
from edgefleet.core import errors
from edgefleet.testing import examples


def test_pickled_arrays_are_refused() -> None:
    buf = io.BytesIO()
    np.savez(buf, image=np.array([{"x": 1}], dtype=object))
    with pytest.raises(errors.InvalidSpecError, match="without pickled objects") as info:
        datasets.load(buf.getvalue())
    assert info.value.reason is errors.Reason.INVALID_INPUT


def test_zip_bomb_is_refused_before_unpacking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "MAX_DATASET_BYTES", 1_000_000)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("image.npy", b"\0" * 1_000_001)  # deflates to about 1 kB
    assert len(out.getvalue()) < 10_000
    with pytest.raises(errors.InvalidSpecError, match="unpacks to"):
        datasets.load(out.getvalue())


def test_sample_counts_must_agree() -> None:
    data = examples.npz_bytes({"image": np.zeros((3, 1, 8, 8), np.float32), "labels": np.zeros(2, np.int64)})
    with pytest.raises(errors.InvalidSpecError, match="disagree on the sample count"):
        datasets.load(data)


def test_check_against_casts_to_the_input_dtype_and_names_what_is_missing() -> None:
    inputs = [measurement.IOSpec("x", "float32", ("batch", 4))]
    fitted = datasets.check_against({"x": np.ones((2, 4), np.float64), "labels": np.zeros(2)}, inputs, "evaluation set")
    assert list(fitted) == ["x"] and fitted["x"].dtype == np.float32
    with pytest.raises(errors.InvalidSpecError, match="evaluation set lacks an array for model input 'x'"):
        datasets.check_against({"y": np.ones((2, 4), np.float32)}, inputs, "evaluation set")
