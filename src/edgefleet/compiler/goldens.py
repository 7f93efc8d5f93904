"""Recording the golden samples of a compiled model within their byte bound (adapter: runs onnxruntime).

:func:`record` picks the samples a device will run before it switches to the model, computes the chosen variant's
outputs on them and packs them into the ``golden.bin`` member (:mod:`edgefleet.core.golden`), at most
:data:`edgefleet.core.golden.MAX_MEMBER_BYTES` (256 KiB) as stored. For each of the first ``count`` evaluation
samples it takes the first of these forms that still fits what is left of the bound:

1. the evaluation sample as it is (``raw``);
2. its float inputs snapped to 8 bits (``u8grid``: a quarter of the bytes, the outputs recomputed on exactly the
   snapped input);
3. snapped and centre-cropped along the input's symbolic (dynamic) spatial axes, halving them down to 32 (in
   multiples of up to 32, the stride convolutional backbones need), for models such as text detectors that take any
   image size: a 480x640 scene becomes 240x320, then 120x160, ...

A sample that fits in none of them ends the list; when not even the first one fits, the compile fails and says which
tensors are too large. :func:`check` then decodes the member the way a device does and runs the samples on a fresh
session configured like a device's, so a compile never publishes golden samples that would fail a device's smoke
test.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from edgefleet.compiler import measurement
from edgefleet.core import errors, golden

Array = np.ndarray[Any, Any]
# zlib's worst case on incompressible data is 5 bytes per 16 KiB block plus 11; keep that much of the bound free.
_ZLIB_MARGIN = 1024
MIN_CROP = 32


@dataclasses.dataclass(frozen=True)
class Recorded:
    """The packed golden samples: manifest descriptors, the member bytes, the largest output magnitude, and how each
    sample was stored (for the report)."""

    samples: list[Any]
    member: bytes
    scale: float
    notes: list[str]


def record(
    model: bytes,
    feed: Mapping[str, Array],
    inputs: Sequence[measurement.IOSpec],
    count: int,
    *,
    threads: int = 1,
    budget: int = golden.MAX_MEMBER_BYTES,
) -> Recorded:
    """Golden samples of ``model`` from the evaluation ``feed`` within ``budget`` bytes (see the module docstring)."""
    sess = measurement.session(model, threads=threads)
    output_names = [o.name for o in sess.get_outputs()]
    total = len(next(iter(feed.values())))
    packed: list[list[tuple[golden.Layout, Array]]] = []
    n_inputs: list[int] = []
    notes: list[str] = []
    used = 0
    smallest: int | None = None
    for index in range(min(count, total)):
        sample = {k: np.asarray(v[index : index + 1]) for k, v in feed.items()}
        accepted = None
        for form, feed_i, layouts in _forms(sample, inputs):
            try:
                outputs = [np.asarray(o) for o in sess.run(None, feed_i)]
            except Exception:  # onnxruntime's own exception types: a crop this model does not accept
                continue
            tensors = [(layout, feed_i[layout.name]) for layout in layouts] + [
                (golden.Layout(name, str(out.dtype), tuple(out.shape)), out)
                for name, out in zip(output_names, outputs, strict=True)
            ]
            size = len(zlib.compress(b"".join(golden.pack_tensor(t, v) for t, v in tensors), 9))
            smallest = size if smallest is None else min(smallest, size)
            if used + size <= budget - _ZLIB_MARGIN:
                accepted = (form, tensors, size)
                break
        if accepted is None:
            break
        form, tensors, size = accepted
        packed.append(tensors)
        n_inputs.append(len(inputs))
        used += size
        notes.append(f"evaluation sample {index}: {form}")
    if not packed:
        shapes = ", ".join(f"{s.name} {list(s.shape)}" for s in inputs)
        raise errors.InvalidSpecError(
            f"no golden sample fits the {golden.MAX_MEMBER_BYTES}-byte bound of {golden.MEMBER}: the smallest form of "
            f"the first evaluation sample (inputs {shapes}, snapped to 8 bits and cropped where the model allows) "
            f"takes {smallest} bytes with its outputs; a device could not smoke-test this model",
            errors.Reason.UNSUPPORTED_MODEL,
        )
    while True:
        described, member = golden.encode(packed, n_inputs)
        if len(member) <= budget or len(packed) == 1:
            break
        packed.pop()
        n_inputs.pop()
        notes.pop()
    if len(member) > budget:
        raise errors.InvalidSpecError(
            f"the golden sample takes {len(member)} bytes, over the {budget}-byte bound of {golden.MEMBER}",
            errors.Reason.UNSUPPORTED_MODEL,
        )
    scale = 0.0
    for tensors, n in zip(packed, n_inputs, strict=True):
        for _, values in tensors[n:]:
            if values.size and values.dtype.kind in "fiu":
                scale = max(scale, float(np.max(np.abs(values.astype(np.float64)))))
    return Recorded(described, member, scale, notes)


def _forms(
    sample: Mapping[str, Array], inputs: Sequence[measurement.IOSpec]
) -> Iterator[tuple[str, dict[str, Array], list[golden.Layout]]]:
    """The ways to store one sample, most faithful first: (description, feed, input layouts)."""
    raw = {s.name: np.ascontiguousarray(sample[s.name]) for s in inputs}
    yield "as is", raw, [golden.Layout(n, str(v.dtype), tuple(v.shape)) for n, v in raw.items()]
    if not any(v.dtype == np.float32 for v in raw.values()):
        return
    current = raw
    description = "inputs snapped to 8 bits"
    for _ in range(8):
        feed: dict[str, Array] = {}
        layouts = []
        for name, value in current.items():
            if value.dtype == np.float32:
                layout, snapped = golden.snap(value)
                feed[name] = snapped
                layouts.append(dataclasses.replace(layout, name=name))
            else:
                feed[name] = value
                layouts.append(golden.Layout(name, str(value.dtype), tuple(value.shape)))
        yield description, feed, layouts
        cropped = _crop(current, inputs)
        if cropped is None:
            return
        current = cropped
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in current.items())
        description = f"inputs snapped to 8 bits and centre-cropped to {shapes}"


def _crop(arrays: Mapping[str, Array], inputs: Sequence[measurement.IOSpec]) -> dict[str, Array] | None:
    """Halve every symbolic axis past the batch one (the same symbol alike), or ``None`` when none can shrink."""
    sizes: dict[str, int] = {}
    for spec in inputs:
        for axis, dim in enumerate(spec.shape):
            if axis == 0 or (isinstance(dim, int) and dim > 0):
                continue
            have = arrays[spec.name].shape[axis]
            symbol = f"{dim}" if isinstance(dim, str) and dim not in ("?", "") else f"{spec.name}:{axis}"
            multiple = min(MIN_CROP, have & -have) if have else 1
            target = max(MIN_CROP, (have // 2) // multiple * multiple)
            if target < have:
                sizes[symbol] = min(sizes.get(symbol, target), target)
    if not sizes:
        return None
    out: dict[str, Array] = {}
    for spec in inputs:
        value = arrays[spec.name]
        slices = []
        for axis, dim in enumerate(spec.shape):
            symbol = f"{dim}" if isinstance(dim, str) and dim not in ("?", "") else f"{spec.name}:{axis}"
            size = sizes.get(symbol) if axis > 0 else None
            if size is None or size >= value.shape[axis]:
                slices.append(slice(None))
            else:
                start = (value.shape[axis] - size) // 2
                slices.append(slice(start, start + size))
        out[spec.name] = np.ascontiguousarray(value[tuple(slices)])
    return out


def check(model: bytes, described: list[Any], member: bytes, rtol: float, atol: float, threads: int = 1) -> None:
    """Decode the samples as a device does and run them on a fresh session; InvalidSpecError when one fails."""
    try:
        decoded = golden.decode({"samples": described, "rtol": rtol, "atol": atol}, member)
    except errors.IntegrityError as exc:
        raise errors.InvalidSpecError(f"the golden samples do not decode: {exc}", errors.Reason.COMPILER_ERROR) from exc
    sess = measurement.session(model, threads=threads)
    names = [o.name for o in sess.get_outputs()]
    for index, sample in enumerate(decoded.samples):
        try:
            actual = dict(zip(names, sess.run(None, dict(sample.inputs)), strict=True))
        except Exception as exc:  # onnxruntime's own exception types
            raise errors.InvalidSpecError(
                f"golden sample {index} does not run: {str(exc).splitlines()[0]}", errors.Reason.COMPILER_ERROR
            ) from exc
        problem = golden.compare(index, actual, sample.outputs, rtol, atol)
        if problem is not None:
            raise errors.InvalidSpecError(
                f"the golden samples would fail a device's smoke test: {problem}", errors.Reason.COMPILER_ERROR
            )


def raw_bytes(described: Sequence[Any]) -> int:
    """Unpacked bytes the descriptors declare (for the report)."""
    return sum(
        golden.Layout(t["name"], t["dtype"], tuple(t["shape"]), t["encoding"]).nbytes
        for s in described
        for side in ("inputs", "outputs")
        for t in s[side]
    )


__all__ = ["MIN_CROP", "Recorded", "check", "raw_bytes", "record"]
