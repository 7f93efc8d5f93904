"""Calibration and evaluation datasets: ``.npz`` files with one array per model input and optional ``labels``.

Datasets come from the network, so :func:`load` treats the bytes as hostile: a size limit on the archive and on
every member's declared size (zip bombs), no pickled objects, numeric dtypes only, and a common sample count.
:func:`check_against` then matches the arrays to the model's inputs and says exactly what does not fit. Both raise
``InvalidSpecError(reason=Reason.INVALID_INPUT)`` naming the array and why.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgefleet.compiler import measurement
from edgefleet.core import errors

MAX_DATASET_BYTES = 512 * 1024 * 1024
LABELS = "labels"
Array = np.ndarray[Any, Any]


def _invalid_input(message: str) -> errors.InvalidSpecError:
    return errors.InvalidSpecError(message, errors.Reason.INVALID_INPUT)


def load(data: bytes, what: str = "dataset") -> dict[str, Array]:
    """Parse untrusted ``.npz`` bytes into ``{name: array}``."""
    if len(data) > MAX_DATASET_BYTES:
        raise _invalid_input(f"{what} is {len(data)} bytes, over the {MAX_DATASET_BYTES}-byte limit")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            declared = sum(info.file_size for info in zf.infolist())
            if declared > MAX_DATASET_BYTES:
                raise _invalid_input(f"{what} unpacks to {declared} bytes, over the {MAX_DATASET_BYTES}-byte limit")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: np.asarray(npz[name]) for name in npz.files}
    except errors.InvalidSpecError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise _invalid_input(f"{what} is not a valid .npz archive without pickled objects: {exc}") from exc
    if not arrays:
        raise _invalid_input(f"{what} holds no arrays")
    counts = {name: (a.shape[0] if a.ndim else 0) for name, a in arrays.items()}
    for name, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise _invalid_input(f"{what}: array {name!r} has dtype {a.dtype}; only numeric arrays are accepted")
        if a.ndim == 0 or counts[name] == 0:
            raise _invalid_input(f"{what}: array {name!r} must have at least one sample on axis 0")
    if len(set(counts.values())) != 1:
        raise _invalid_input(f"{what}: arrays disagree on the sample count (axis 0): {counts}")
    return arrays


def check_against(arrays: Mapping[str, Array], inputs: Sequence[measurement.IOSpec], what: str) -> dict[str, Array]:
    """The model's input arrays from ``arrays``, cast to the input dtypes and shape-checked (InvalidSpecError)."""
    out: dict[str, Array] = {}
    for spec in inputs:
        if spec.name not in arrays:
            have = ", ".join(sorted(arrays)) or "nothing"
            raise _invalid_input(f"{what} lacks an array for model input {spec.name!r} (it has {have})")
        a = arrays[spec.name]
        if a.ndim != len(spec.shape):
            raise _invalid_input(
                f"{what}: array {spec.name!r} has rank {a.ndim}, "
                f"the model input wants rank {len(spec.shape)} {list(spec.shape)}"
            )
        for axis, (have_dim, want) in enumerate(zip(a.shape, spec.shape, strict=True)):
            if isinstance(want, int) and want > 0 and axis > 0 and have_dim != want:
                raise _invalid_input(
                    f"{what}: array {spec.name!r} has shape {list(a.shape)}, the model input wants "
                    f"{list(spec.shape)} (axis {axis})"
                )
        out[spec.name] = np.ascontiguousarray(a.astype(spec.dtype, copy=False))
    return out


def labels(arrays: Mapping[str, Array]) -> Array | None:
    """The optional ``labels`` array."""
    return arrays.get(LABELS)


def samples(arrays: Mapping[str, Array], limit: int) -> list[dict[str, Array]]:
    """Up to ``limit`` batch-1 feeds (``{input: array[1, ...]}``), in dataset order."""
    count = len(next(iter(arrays.values())))
    return [{k: v[i : i + 1] for k, v in arrays.items()} for i in range(min(count, limit))]
