"""Golden samples as a compressed binary bundle member: the encoding, its bounds and the comparison. Pure.

A bundle (schema version 2) carries its golden samples, the inputs a device runs before it switches to a model and
the outputs the compiler saw for them, in their own member ``golden.bin`` instead of base64 inside the manifest. The
manifest's ``golden`` entry describes every tensor (:class:`Layout`: name, dtype, shape, encoding); the member is one
zlib stream (RFC 1950) of the tensors' bytes in that order, sample by sample, inputs before outputs. The manifest
pins the member's sha256 and size like the model's, so signing the manifest signs it.

Bounds (the same numbers for the compiler that writes and the verifier that reads):

* the member is at most :data:`MAX_MEMBER_BYTES` (256 KiB) as stored;
* the tensors it declares are at most :data:`MAX_RAW_BYTES` (8 MiB) unpacked, and the stream must unpack to
  exactly that many bytes (checked while inflating, so a small member cannot expand without bound);
* at most :data:`MAX_SAMPLES` samples of at most :data:`MAX_TENSORS` tensors each, rank at most 8.

Encodings: ``raw`` is the tensor's little-endian C-order bytes. ``u8grid`` stores a float input as one byte per
element on an even grid: the value is ``low + q * step`` computed in float32 (``q`` the stored byte). The compiler
snaps an evaluation sample onto that grid *before* it runs the model, so the recorded outputs belong to exactly the
input the device rebuilds (IEEE float32 arithmetic gives the same bits everywhere); images, the usual large inputs,
come from 8-bit pixels, so the snapped input is still a realistic one. Worked example: a ``1x3x224x224`` float32
image is 602,112 bytes raw, 150,528 as ``u8grid``, and with its 4-class output fits the 256 KiB bound.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgefleet.core import errors

MEMBER = "golden.bin"
MAX_MEMBER_BYTES = 256 * 1024
MAX_RAW_BYTES = 8 * 1024 * 1024
MAX_SAMPLES = 16
MAX_TENSORS = 64
MAX_RANK = 8
ENCODINGS = ("raw", "u8grid")
DTYPES = ("float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")

Array = np.ndarray[Any, Any]


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one tensor of a golden sample is stored: ``low``/``step`` only for ``u8grid``."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    encoding: str = "raw"
    low: float | None = None
    step: float | None = None

    @property
    def nbytes(self) -> int:
        """Bytes this tensor takes in the unpacked stream."""
        count = math.prod(self.shape)
        return count if self.encoding == "u8grid" else count * np.dtype(self.dtype).itemsize

    def to_wire(self) -> dict[str, Any]:
        """The manifest form."""
        wire: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        wire["encoding"] = self.encoding
        if self.encoding == "u8grid":
            wire["low"], wire["step"] = self.low, self.step
        return wire


@dataclasses.dataclass(frozen=True)
class Sample:
    """One golden sample: input and expected output arrays by name."""

    inputs: Mapping[str, Array]
    outputs: Mapping[str, Array]


@dataclasses.dataclass(frozen=True)
class Golden:
    """A manifest's golden samples with their tolerances."""

    samples: tuple[Sample, ...]
    rtol: float
    atol: float


def snap(array: Array) -> tuple[Layout, Array]:
    """``array`` (float) on a 256-level grid between its minimum and maximum: the layout and the snapped values.

    The snapped values are what :func:`decode` rebuilds bit for bit; run the model on them, not on ``array``.

    >>> layout, snapped = snap(np.array([0.0, 0.5, 1.0], dtype=np.float32))
    >>> layout.encoding, layout.low, snapped.tolist()
    ('u8grid', 0.0, [0.0, 0.49803924560546875, 1.0])
    """
    values = np.asarray(array, dtype=np.float32)
    low = np.float32(values.min()) if values.size else np.float32(0.0)
    high = np.float32(values.max()) if values.size else np.float32(0.0)
    step = np.float32((high - low) / np.float32(255.0)) if high > low else np.float32(0.0)
    q = np.zeros(values.shape, dtype=np.uint8) if step == 0 else np.rint((values - low) / step).clip(0, 255)
    layout = Layout("", str(values.dtype), tuple(values.shape), "u8grid", float(low), float(step))
    return layout, _rebuild(q.astype(np.uint8), low, step)


def _rebuild(q: Array, low: np.float32, step: np.float32) -> Array:
    out: Array = np.float32(low) + q.astype(np.float32) * np.float32(step)
    return out.astype(np.float32)


def encode(samples: Sequence[Sequence[tuple[Layout, Array]]], inputs: Sequence[int]) -> tuple[list[Any], bytes]:
    """Pack samples into ``(manifest descriptors, member bytes)`` (pure).

    ``samples[i]`` lists sample ``i``'s tensors as ``(layout, values)``; ``inputs[i]`` says how many of them are
    inputs (the rest are outputs). ``u8grid`` values must come from :func:`snap`.
    """
    described: list[Any] = []
    chunks: list[bytes] = []
    for tensors, n_inputs in zip(samples, inputs, strict=True):
        entry: dict[str, list[dict[str, Any]]] = {"inputs": [], "outputs": []}
        for index, (layout, values) in enumerate(tensors):
            entry["inputs" if index < n_inputs else "outputs"].append(layout.to_wire())
            chunks.append(pack_tensor(layout, values))
        described.append(entry)
    return described, zlib.compress(b"".join(chunks), 9)


def pack_tensor(layout: Layout, values: Array) -> bytes:
    """The bytes of one tensor in the unpacked stream (``u8grid`` values must come from :func:`snap`)."""
    if layout.encoding == "u8grid":
        assert layout.low is not None and layout.step is not None
        if layout.step == 0:
            return bytes(math.prod(layout.shape))
        q = np.rint((np.asarray(values, np.float32) - np.float32(layout.low)) / np.float32(layout.step))
        return bytes(q.clip(0, 255).astype(np.uint8).tobytes())
    arr = np.ascontiguousarray(np.asarray(values, dtype=layout.dtype))
    return bytes(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())


def layouts(described: Any) -> list[tuple[list[Layout], list[Layout]]]:
    """Parse and bound the manifest's sample descriptors; raises IntegrityError naming the first bad field (pure)."""
    if not isinstance(described, list) or not described:
        raise errors.IntegrityError("golden.samples must be a non-empty list")
    if len(described) > MAX_SAMPLES:
        raise errors.IntegrityError(f"golden.samples has {len(described)} samples, over the limit of {MAX_SAMPLES}")
    parsed = []
    total = 0
    for i, sample in enumerate(described):
        if not isinstance(sample, dict) or set(sample) != {"inputs", "outputs"}:
            raise errors.IntegrityError(f"golden.samples[{i}] must have exactly 'inputs' and 'outputs'")
        sides = []
        for side in ("inputs", "outputs"):
            items = sample[side]
            if not isinstance(items, list) or not items or len(items) > MAX_TENSORS:
                raise errors.IntegrityError(f"golden.samples[{i}].{side} must list 1 to {MAX_TENSORS} tensors")
            sides.append([_layout(item, f"golden.samples[{i}].{side}[{j}]") for j, item in enumerate(items)])
        total += sum(t.nbytes for t in sides[0] + sides[1])
        if total > MAX_RAW_BYTES:
            raise errors.IntegrityError(f"golden samples declare over {MAX_RAW_BYTES} bytes of tensors (the limit)")
        parsed.append((sides[0], sides[1]))
    return parsed


def _layout(item: Any, where: str) -> Layout:
    if not isinstance(item, dict):
        raise errors.IntegrityError(f"{where} must be an object")
    name, dtype, shape, encoding = item.get("name"), item.get("dtype"), item.get("shape"), item.get("encoding")
    if not isinstance(name, str) or not 0 < len(name) <= 256:
        raise errors.IntegrityError(f"{where}.name must be a string of 1 to 256 characters")
    if dtype not in DTYPES:
        raise errors.IntegrityError(f"{where}.dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if encoding not in ENCODINGS:
        raise errors.IntegrityError(f"{where}.encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_RANK
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_RAW_BYTES for d in shape)
    ):
        raise errors.IntegrityError(f"{where}.shape must be a list of at most {MAX_RANK} non-negative integers")
    allowed = {"name", "dtype", "shape", "encoding"}
    low = step = None
    if encoding == "u8grid":
        allowed |= {"low", "step"}
        low, step = item.get("low"), item.get("step")
        if dtype != "float32" or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (low, step)
        ):
            raise errors.IntegrityError(f"{where}: u8grid needs dtype float32 and finite low and step")
    extra = set(item) - allowed
    if extra:
        raise errors.IntegrityError(f"{where} has unknown fields {sorted(extra)}")
    return Layout(
        name, dtype, tuple(shape), encoding, None if low is None else float(low), None if step is None else float(step)
    )


def decode(golden: Mapping[str, Any], member: bytes) -> Golden:
    """The samples of a schema-2 ``golden`` manifest entry from the member's bytes (pure).

    Raises IntegrityError when the entry or the member is malformed, too large, or they disagree.
    """
    if len(member) > MAX_MEMBER_BYTES:
        raise errors.IntegrityError(f"{MEMBER} is {len(member)} bytes, over the {MAX_MEMBER_BYTES}-byte limit")
    rtol, atol = golden.get("rtol"), golden.get("atol")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < math.inf for v in (rtol, atol)):
        raise errors.IntegrityError("golden.rtol and golden.atol must be finite non-negative numbers")
    parsed = layouts(golden.get("samples"))
    total = sum(t.nbytes for ins, outs in parsed for t in ins + outs)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(member, total + 1)
    except zlib.error as exc:
        raise errors.IntegrityError(f"{MEMBER} is not a valid zlib stream: {exc}") from exc
    if len(raw) != total or not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        raise errors.IntegrityError(f"{MEMBER} does not unpack to exactly the {total} bytes the manifest declares")
    samples = []
    offset = 0
    for ins, outs in parsed:
        arrays = []
        for layout in ins + outs:
            chunk = raw[offset : offset + layout.nbytes]
            offset += layout.nbytes
            arrays.append((layout.name, _decode_tensor(layout, chunk)))
        samples.append(Sample(dict(arrays[: len(ins)]), dict(arrays[len(ins) :])))
    assert rtol is not None and atol is not None
    return Golden(tuple(samples), float(rtol), float(atol))


def _decode_tensor(layout: Layout, chunk: bytes) -> Array:
    if layout.encoding == "u8grid":
        assert layout.low is not None and layout.step is not None
        q = np.frombuffer(chunk, dtype=np.uint8).reshape(layout.shape)
        return _rebuild(q, np.float32(layout.low), np.float32(layout.step))
    dtype = np.dtype(layout.dtype).newbyteorder("<")
    return np.frombuffer(chunk, dtype=dtype).reshape(layout.shape).astype(dtype.newbyteorder("="))


def compare(
    index: int, actual: Mapping[str, Array], expected: Mapping[str, Array], rtol: float, atol: float
) -> str | None:
    """What is wrong with one sample's outputs (``None``: nothing), without tensor values (pure).

    Every expected output must be present, finite, of the same shape and ``numpy.allclose(actual, expected, rtol,
    atol)``.
    """
    for name, want in expected.items():
        got = actual.get(name)
        if got is None:
            return f"golden sample {index}: the model has no output {name!r}"
        got = np.asarray(got)
        if got.dtype.kind in "fc" and not np.all(np.isfinite(got)):
            return f"golden sample {index}: output {name!r} is not finite"
        try:
            close = got.shape == want.shape and bool(np.allclose(got, want, rtol=rtol, atol=atol))
        except (TypeError, ValueError):  # e.g. a bool expected against a float output
            close = False
        if not close:
            return f"golden sample {index}: output {name!r} is outside rtol={rtol}, atol={atol}"
    return None


__all__ = [
    "DTYPES",
    "ENCODINGS",
    "MAX_MEMBER_BYTES",
    "MAX_RAW_BYTES",
    "MAX_SAMPLES",
    "MEMBER",
    "Golden",
    "Layout",
    "Sample",
    "compare",
    "decode",
    "encode",
    "layouts",
    "pack_tensor",
    "snap",
]
