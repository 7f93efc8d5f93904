"""Tensors as JSON: how a bundle manifest carries golden samples and the device's inference API carries arrays. Pure.

An encoded tensor is ``{"dtype": str, "shape": [int, ...], "data": base64 of its little-endian C-order bytes}``.
The compiler encodes the golden samples of the manifests it builds (without importing the bundle adapter); devices
decode them for their smoke test through :func:`edgefleet.adapters.bundle.decode_array`, which reports a malformed
tensor as a ``BundleError``.

>>> encoded = encode(np.array([[1.5, -2.0]], dtype=np.float32))
>>> encoded["dtype"], encoded["shape"]
('float32', [1, 2])
>>> decode(encoded).tolist()
[[1.5, -2.0]]
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgefleet.core import errors


def encode(array: np.ndarray[Any, Any]) -> dict[str, Any]:
    """Encode a tensor: dtype, shape and base64 of its little-endian C-order bytes (pure)."""
    arr = np.ascontiguousarray(array)
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return {
        "dtype": arr.dtype.name,
        "shape": list(arr.shape),
        "data": base64.b64encode(little.tobytes()).decode(),
    }


DTYPES = frozenset(
    {"bool", "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
)
"""The dtypes a tensor may have on the wire: numeric and boolean only (no objects, strings, records or void)."""
MAX_RANK = 16


def check_shape(shape: Any) -> tuple[int, ...]:
    """A shape from the wire as a tuple of non-negative ints of at most :data:`MAX_RANK` dims (pure); raises
    IntegrityError otherwise.

    >>> check_shape([1, 4])
    (1, 4)
    """
    if not isinstance(shape, list | tuple) or len(shape) > MAX_RANK:
        raise errors.IntegrityError(f"shape must be a list of at most {MAX_RANK} non-negative integers")
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**63 for d in shape):
        raise errors.IntegrityError("shape must hold non-negative integers only")
    return tuple(shape)


def check_dtype(name: Any) -> np.dtype[Any]:
    """The numpy dtype of a wire dtype name in :data:`DTYPES` (pure); raises IntegrityError otherwise.

    >>> check_dtype("float32")
    dtype('float32')
    """
    if not isinstance(name, str) or name not in DTYPES:
        raise errors.IntegrityError(f"dtype must be one of {', '.join(sorted(DTYPES))}")
    return np.dtype(name)


def from_bytes(raw: bytes, dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    """A native-order array of ``shape`` from little-endian C-order ``raw`` (pure); the byte count must match
    exactly, so nothing is allocated for a shape the data does not fill."""
    need = math.prod(shape) * dtype.itemsize
    if need != len(raw):
        raise errors.IntegrityError(f"data holds {len(raw)} bytes, shape {list(shape)} of {dtype.name} needs {need}")
    little = dtype.newbyteorder("<")
    return np.frombuffer(raw, dtype=little).reshape(shape).astype(dtype, copy=False)


def decode(encoded: Any) -> np.ndarray[Any, Any]:
    """Inverse of :func:`encode` (pure, total): raises IntegrityError, and nothing else, on any malformed input."""
    if not isinstance(encoded, Mapping):
        raise errors.IntegrityError("malformed tensor: expected an object with dtype, shape and data")
    try:
        dtype = check_dtype(encoded.get("dtype"))
        shape = check_shape(encoded.get("shape"))
        data = encoded.get("data")
        if not isinstance(data, str):
            raise errors.IntegrityError("data must be a base64 string")
        try:
            raw = base64.b64decode(data, validate=True)
        except ValueError as exc:
            raise errors.IntegrityError("data is not valid base64") from exc
        return from_bytes(raw, dtype, shape)
    except errors.IntegrityError as exc:
        raise errors.IntegrityError(f"malformed tensor: {exc}") from exc


__all__ = ["DTYPES", "MAX_RANK", "check_dtype", "check_shape", "decode", "encode", "from_bytes"]
