"""Graph passes that turn an FP32 ONNX model into candidate variants (adapter: imports onnx and onnxruntime).

Each pass takes model bytes and returns model bytes, so candidates are independent and every intermediate can be
hashed. Real exported models are messy, so every pass is defensive:

* :func:`load_source` rejects oversized, unparsable or externally-stored models with a message saying so.
* :func:`normalize` moves weights held in ``Constant`` nodes into initializers (quantizers only see
  initializers), drops initializers from the graph inputs, and runs shape inference when it works (a failure
  keeps the model as it was instead of crashing).
* :func:`optimize` is onnxruntime's offline graph optimisation at the *basic* level: constant folding,
  Conv+BatchNorm/Add/Mul fusion and redundant-node removal are hardware independent, so the file is portable;
  layout-changing levels are not, and are left to the device's session.
* :func:`to_fp16` uses onnxruntime's own converter and keeps float32 inputs and outputs.
* :func:`quantize_dynamic` / :func:`quantize_static` wrap onnxruntime's quantizers. Per-channel weights need
  opset >= 13 (per-axis ``DequantizeLinear``); older models are upgraded with the ONNX version converter
  first, and when that fails per-channel is turned off instead of producing a file onnxruntime refuses to load.
* :func:`prune` zeroes the smallest-magnitude weights of Conv/MatMul/Gemm.

Vendor exceptions are converted here (STYLE rule 5): a pass that cannot produce a valid model raises
``InvalidSpecError(reason=Reason.INVALID_INPUT)`` saying which pass and why.
"""

from __future__ import annotations

import contextlib
import io
import logging
import pathlib
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper, shape_inference, version_converter
from onnxruntime import quantization as ortq
from onnxruntime.transformers import float16 as ort_float16

from edgefleet.core import errors

MAX_MODEL_BYTES = 1024 * 1024 * 1024
WEIGHT_OPS = ("Conv", "MatMul", "Gemm", "ConvTranspose")
PER_CHANNEL_MIN_OPSET = 13
CALIBRATION_METHODS = {
    "MinMax": ortq.CalibrationMethod.MinMax,
    "Entropy": ortq.CalibrationMethod.Entropy,
    "Percentile": ortq.CalibrationMethod.Percentile,
}
QUANT_TYPES = {"s8": ortq.QuantType.QInt8, "u8": ortq.QuantType.QUInt8}

log = logging.getLogger(__name__)


def _invalid_input(message: str) -> errors.InvalidSpecError:
    return errors.InvalidSpecError(message, errors.Reason.INVALID_INPUT)


def load_source(data: bytes) -> onnx.ModelProto:
    """Parse untrusted model bytes: size limit, protobuf parse, no external data, structural check."""
    if len(data) > MAX_MODEL_BYTES:
        raise _invalid_input(f"model is {len(data)} bytes, over the {MAX_MODEL_BYTES}-byte limit")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise _invalid_input(f"model is not a valid ONNX protobuf: {exc}") from exc
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise _invalid_input(f"initializer {tensor.name!r} uses external data; ship a single self-contained file")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise _invalid_input(f"model fails the ONNX checker: {str(exc).splitlines()[0]}") from exc
    return model


def opset(model: onnx.ModelProto) -> int:
    """The default-domain opset version of ``model``."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def serialize(model: onnx.ModelProto) -> bytes:
    """Deterministic protobuf bytes of ``model``."""
    data: bytes = model.SerializeToString(deterministic=True)
    return data


def normalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant-node weights to initializers, initializers out of the inputs, shape inference if it works."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    keep = []
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1:
            attr = node.attribute[0]
            if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                tensor = onnx.TensorProto()
                tensor.CopyFrom(attr.t)
                tensor.name = node.output[0]
                graph.initializer.append(tensor)
                continue
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    init_names = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init_names]
    del graph.input[:]
    graph.input.extend(inputs)
    if out.ir_version < 4:
        out.ir_version = 4
    try:
        inferred = shape_inference.infer_shapes(out, strict_mode=False)
        onnx.checker.check_model(inferred)
        return inferred
    except Exception as exc:  # shape inference failures are common on exported models; keep going without
        log.info("Skipped shape inference: %s", exc)
        return out


def upgrade_opset(model: onnx.ModelProto, target: int = PER_CHANNEL_MIN_OPSET) -> onnx.ModelProto | None:
    """``model`` converted to opset ``target`` when it is lower, or ``None`` when the converter fails."""
    if opset(model) >= target:
        return model
    try:
        converted = version_converter.convert_version(model, target)
        onnx.checker.check_model(converted)
    except Exception as exc:  # the converter raises RuntimeError/ValidationError/IndexError on odd graphs
        log.info("Skipped opset upgrade to %d: %s", target, exc)
        return None
    return converted


@contextlib.contextmanager
def _workdir() -> Iterator[pathlib.Path]:
    with tempfile.TemporaryDirectory(prefix="edgefleet-compile-") as tmp:
        yield pathlib.Path(tmp)


def optimize(model: bytes) -> bytes:
    """onnxruntime offline graph optimisation at the basic (hardware-independent) level."""
    with _workdir() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(tmp / "optimized.onnx")
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        try:
            ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise _invalid_input(f"onnxruntime cannot load the model: {str(exc).splitlines()[0]}") from exc
        optimized = onnx.load(str(tmp / "optimized.onnx"))
    optimized.producer_name = "edgefleet"
    optimized.producer_version = ""
    return serialize(optimized)


def to_fp16(model: bytes, block_ops: Sequence[str] = ()) -> bytes:
    """FP16 weights and compute with float32 IO, via onnxruntime's converter."""
    try:
        converted = ort_float16.convert_float_to_float16(
            onnx.load_model_from_string(model),
            keep_io_types=True,
            disable_shape_infer=False,
            op_block_list=list(ort_float16.DEFAULT_OP_BLOCK_LIST) + list(block_ops),
        )
    except Exception as exc:  # the converter raises assorted errors on unusual graphs
        raise _invalid_input(f"fp16 conversion failed: {exc}") from exc
    return serialize(converted)


def preprocess(model: bytes) -> tuple[bytes, str]:
    """onnxruntime's quantization pre-processing (symbolic shape inference, optimisation, shape inference).

    Falls back to skipping symbolic shape inference, then to no pre-processing, when a step fails on the
    graph; returns the model and which level was applied.
    """
    attempts: tuple[tuple[str, dict[str, bool]], ...] = (
        ("full", {}),
        ("no-symbolic-shapes", {"skip_symbolic_shape": True}),
    )
    for level, kwargs in attempts:
        with _workdir() as tmp, _quiet(), _inside(tmp):
            try:
                (tmp / "in.onnx").write_bytes(model)
                ortq.quant_pre_process(str(tmp / "in.onnx"), str(tmp / "pre.onnx"), **kwargs)
                out = onnx.load(str(tmp / "pre.onnx"))
                onnx.checker.check_model(out)
            except Exception as exc:  # symbolic shape inference fails on many exported models
                log.info("Quantization pre-processing (%s) failed: %s", level, exc)
                continue
        return serialize(out), level
    return model, "none"


_CWD_LOCK = threading.Lock()


@contextlib.contextmanager
def _inside(directory: pathlib.Path) -> Iterator[None]:
    """Run with ``directory`` as the working directory.

    onnxruntime's symbolic shape inference saves ``sym_shape_infer_temp.onnx`` plus external data into the
    current directory whenever it cannot infer every shape, which is common on exported models; the compiler
    must not litter wherever it was started. The working directory is process-wide, hence the lock: the
    compiler's own paths are all absolute, and nothing else should hold this section long.
    """
    with _CWD_LOCK, contextlib.chdir(directory):
        yield


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the quantization tools' prints and root-logger warnings while they run."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(previous)


def _prepare_for_quantization(model: bytes, per_channel: bool) -> tuple[onnx.ModelProto, bool]:
    proto = onnx.load_model_from_string(model)
    if per_channel:
        upgraded = upgrade_opset(proto)
        if upgraded is None:
            return proto, False
        proto = upgraded
    return proto, per_channel


def quantize_dynamic(
    model: bytes,
    per_channel: bool = False,
    reduce_range: bool = False,
    weight_type: str = "s8",
    exclude_nodes: Sequence[str] = (),
) -> tuple[bytes, dict[str, Any]]:
    """Weight-only INT8 (activations quantized at run time); returns the model and the options used."""
    proto, per_channel = _prepare_for_quantization(model, per_channel)
    with _workdir() as tmp, _quiet():
        try:
            ortq.quantize_dynamic(
                proto,
                tmp / "q.onnx",
                per_channel=per_channel,
                reduce_range=reduce_range,
                weight_type=QUANT_TYPES[weight_type],
                nodes_to_exclude=list(exclude_nodes),
                extra_options={"MatMulConstBOnly": True},
            )
            out = onnx.load(str(tmp / "q.onnx"))
        except Exception as exc:  # quantizer raises ValueError/RuntimeError/KeyError on unusual graphs
            raise _invalid_input(f"dynamic quantization failed: {exc}") from exc
    options = {
        "method": "dynamic",
        "format": "QOperator",
        "perChannel": per_channel,
        "reduceRange": reduce_range,
        "weightType": weight_type,
        "excludedNodes": sorted(exclude_nodes),
    }
    return serialize(out), options


class _Reader(ortq.CalibrationDataReader):  # type: ignore[misc]
    """Calibration feeds for onnxruntime's calibrators; ``set_range`` lets them collect stride by stride."""

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray[Any, Any]]]) -> None:
        self._feeds = list(feeds)
        self._index = 0
        self._end = len(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)

    def get_next(self) -> dict[str, np.ndarray[Any, Any]] | None:
        if self._index >= self._end:
            return None
        feed = dict(self._feeds[self._index])
        self._index += 1
        return feed

    def set_range(self, start_index: int, end_index: int) -> None:
        self._index, self._end = start_index, min(end_index, len(self._feeds))

    def rewind(self) -> None:
        self._index, self._end = 0, len(self._feeds)


def quantize_static(
    model: bytes,
    calibration: Sequence[Mapping[str, np.ndarray[Any, Any]]],
    quant_format: str = "QDQ",
    per_channel: bool = True,
    method: str = "MinMax",
    activation_type: str = "s8",
    weight_type: str = "s8",
    reduce_range: bool = False,
    exclude_nodes: Sequence[str] = (),
    cache_dir: pathlib.Path | None = None,
    stride: int | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """Calibrated INT8 (QDQ or QOperator); returns the model and the options actually used.

    ``cache_dir`` keeps calibration ranges per (method, opset) so variants that differ only in format, types or
    excluded nodes calibrate once. ``stride`` feeds the calibrator that many samples at a time (ranges and histograms
    are merged between strides), which bounds its memory; the sample count must be a multiple of it.
    """
    proto, per_channel = _prepare_for_quantization(model, per_channel)
    extra: dict[str, Any] = {"MatMulConstBOnly": True}
    if stride is not None and stride < len(calibration):
        if len(calibration) % stride:
            raise ValueError(f"{len(calibration)} calibration samples do not split into strides of {stride}")
        extra["CalibStridedMinMax"] = stride
    if method == "Percentile":
        extra["CalibPercentile"] = 99.99
    with _workdir() as tmp, _quiet():
        cache = None
        if cache_dir is not None:
            cache = cache_dir / f"calibration-{method}-opset{opset(proto)}.json"
        try:
            ortq.quantize_static(
                proto,
                tmp / "q.onnx",
                _Reader(calibration),
                quant_format=ortq.QuantFormat.QDQ if quant_format == "QDQ" else ortq.QuantFormat.QOperator,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=QUANT_TYPES[activation_type],
                weight_type=QUANT_TYPES[weight_type],
                nodes_to_exclude=list(exclude_nodes),
                calibrate_method=CALIBRATION_METHODS[method],
                extra_options=extra,
                calibration_cache_path=cache,
            )
            out = onnx.load(str(tmp / "q.onnx"))
        except Exception as exc:  # quantizer and calibrator raise assorted errors on unusual graphs
            raise _invalid_input(
                f"static quantization failed: {str(exc).splitlines()[0] if str(exc) else exc!r}"
            ) from exc
    options = {
        "method": "static",
        "format": quant_format,
        "perChannel": per_channel,
        "calibrationMethod": method,
        "activationType": activation_type,
        "weightType": weight_type,
        "reduceRange": reduce_range,
        "excludedNodes": sorted(exclude_nodes),
    }
    return serialize(out), options


def expose(model: bytes, tensors: Sequence[str] | None = None) -> bytes:
    """``model`` with ``tensors`` (default: every float tensor a node produces) added to the graph outputs."""
    proto = onnx.load_model_from_string(model)
    present = [o for n in proto.graph.node for o in n.output if o]
    if tensors is None:
        floats = {v.name for v in proto.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
        tensors = [t for t in present if t in floats] if floats else present
    existing = {o.name for o in proto.graph.output}
    known = set(present)
    for name in tensors:
        if name in known and name not in existing:
            proto.graph.output.append(onnx.ValueInfoProto(name=name))
            existing.add(name)
    return serialize(proto)


def weight_nodes(model: bytes) -> list[str]:
    """Names of the nodes that carry quantizable weights (Conv/MatMul/Gemm with an initializer input)."""
    proto = onnx.load_model_from_string(model)
    inits = {t.name for t in proto.graph.initializer}
    return [n.name for n in proto.graph.node if n.op_type in WEIGHT_OPS and any(i in inits for i in n.input[1:])]


def prune(model: bytes, sparsity: float) -> tuple[bytes, float]:
    """Zero the ``sparsity`` share of smallest-magnitude weights of each weight tensor.

    Returns the model and the share of zeros achieved over the pruned tensors.

    Only matrices/kernels (rank >= 2, at least 256 elements) feeding Conv/MatMul/Gemm are pruned; biases and
    small tensors are left alone, as pruning them saves nothing and hurts accuracy most.
    """
    proto = onnx.load_model_from_string(model)
    weight_inputs = {i for n in proto.graph.node if n.op_type in WEIGHT_OPS for i in n.input[1:2]}
    zeros = total = 0
    for tensor in proto.graph.initializer:
        if tensor.name not in weight_inputs or tensor.data_type != onnx.TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(tensor).copy()
        if values.ndim < 2 or values.size < 256:
            continue
        k = int(values.size * sparsity)
        if k > 0:
            threshold = np.partition(np.abs(values).ravel(), k - 1)[k - 1]
            values[np.abs(values) <= threshold] = 0.0
        zeros += int(np.count_nonzero(values == 0))
        total += values.size
        tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    return serialize(proto), (zeros / total if total else 0.0)


def pack_sparse(model: bytes, min_elements: int = 1024) -> tuple[bytes, int]:
    """Store mostly-zero initializers as ONNX sparse initializers when that makes the file smaller.

    Sparsity-aware packaging for pruned models: a tensor becomes ``values`` plus flat int32 ``indices``
    (8 bytes per float32 non-zero instead of 4 per element), which pays off above roughly 55 % zeros.
    onnxruntime turns sparse initializers back into dense tensors when it loads the model, so kernels and
    speed are unchanged; only the artifact (download and flash storage on the device) shrinks. Returns the
    model and how many tensors were packed.
    """
    proto = onnx.load_model_from_string(model)
    keep = []
    packed = 0
    for tensor in proto.graph.initializer:
        values = numpy_helper.to_array(tensor)
        if values.size < min_elements or values.size >= 2**31 or values.dtype.kind not in "fiu":
            keep.append(tensor)
            continue
        nonzero = np.flatnonzero(values)
        if len(nonzero) * (values.itemsize + 4) >= 0.9 * values.nbytes:
            keep.append(tensor)
            continue
        sparse = onnx.helper.make_sparse_tensor(
            numpy_helper.from_array(values.ravel()[nonzero], tensor.name),
            numpy_helper.from_array(nonzero.astype(np.int32), f"{tensor.name}.indices"),
            list(values.shape),
        )
        proto.graph.sparse_initializer.append(sparse)
        packed += 1
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)
    return serialize(proto), packed


def tidy(model: bytes) -> bytes:
    """Drop what a device never needs from a finished variant: opset imports no node uses (onnxruntime's optimiser
    writes every domain it knows), intermediate ``value_info`` (onnxruntime infers shapes when it loads the model),
    doc strings, and long node names (onnxruntime's fusions name nodes ``dense0/MatMulAddFusion_MatMul_quant``;
    nothing refers to a node by name once the model is built, so they become ``n0``, ``n1``, ...). Tensor names stay.
    Every byte counts for a device behind a thin link."""
    proto = onnx.load_model_from_string(model)
    used = {n.domain or "" for n in proto.graph.node} | {""}
    keep = [o for o in proto.opset_import if (o.domain or "") in used or o.domain == "ai.onnx"]
    del proto.opset_import[:]
    proto.opset_import.extend(keep)
    del proto.graph.value_info[:]
    proto.doc_string = ""
    proto.graph.doc_string = ""
    for index, node in enumerate(proto.graph.node):
        node.doc_string = ""
        node.name = f"n{index}"
    return serialize(proto)


def check_loadable(model: bytes) -> None:
    """Raise InvalidSpecError unless onnxruntime's CPU provider can load ``model``."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    try:
        ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise _invalid_input(f"onnxruntime refuses to load the result: {str(exc).splitlines()[0]}") from exc
