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
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgefleet.core import errors


def encode(array: np.ndarray[Any, Any]) -> dict[str, Any]:
    """Encode a tensor: dtype, shape and base64 of its little-endian C-order bytes (pure)."""
    arr = np.ascontiguousarray(array)
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return {
        "dtype": str(arr.dtype),
        "shape": list(arr.shape),
        "data": base64.b64encode(little.tobytes()).decode(),
    }


def decode(encoded: Mapping[str, Any]) -> np.ndarray[Any, Any]:
    """Inverse of :func:`encode` (pure); raises IntegrityError on inconsistent dtype, shape or data."""
    try:
        dtype = np.dtype(str(encoded["dtype"])).newbyteorder("<")
        shape = tuple(int(d) for d in encoded["shape"])
        raw = base64.b64decode(str(encoded["data"]), validate=True)
        return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.IntegrityError(f"malformed tensor in manifest: {exc}") from exc


__all__ = ["decode", "encode"]
