"""Tensors as JSON: lossless for every dtype devices use, and malformed input is an integrity failure."""

from __future__ import annotations

import numpy as np
import pytest

from edgefleet.core import errors, tensors


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool"])
def test_round_trip_keeps_dtype_shape_and_values(dtype: str) -> None:
    array = (np.arange(24).reshape(2, 3, 4) % 5).astype(dtype)
    decoded = tensors.decode(tensors.encode(array))
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    assert np.array_equal(decoded, array)


def test_big_endian_input_is_carried_as_little_endian_bytes() -> None:
    array = np.array([1.0, 2.0], dtype=">f4")
    encoded = tensors.encode(array)
    assert encoded["data"] == tensors.encode(array.astype("<f4"))["data"]
    assert tensors.decode(encoded).tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    "encoded",
    [
        {"dtype": "float32", "shape": [2]},
        {"dtype": "float32", "shape": [3], "data": "AACAPwAAAEA="},
        {"dtype": "no-such-type", "shape": [1], "data": ""},
        {"dtype": "float32", "shape": [1], "data": "not base64!"},
    ],
)
def test_malformed_tensors_are_integrity_errors(encoded: dict[str, object]) -> None:
    with pytest.raises(errors.IntegrityError, match="malformed tensor"):
        tensors.decode(encoded)
