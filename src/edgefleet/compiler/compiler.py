"""The model compiler: build candidate variants, measure them, gate them, choose one, sign the bundle.

:func:`compile_model` is the library entry point the operator and ``edgefleet compile`` call. It is a
pipeline of
adapters around one pure decision (:func:`edgefleet.compiler.selection.choose`):

1. parse the source model and datasets (hostile input: size limits, no pickles, shape checks);
2. normalise (Constant-node weights to initializers, shape inference when possible) and optimise FP32 offline;
3. build every planned candidate (FP16, INT8 dynamic, INT8 static QDQ/QOperator with several calibration
   methods, optionally on a magnitude-pruned model); a candidate that fails to build or load is kept in the
   report with its error instead of aborting the compile;
4. run every candidate on the evaluation set and compute fidelity against FP32; when no INT8 candidate passes
   the gate, rank the weight nodes of the best QDQ candidate by the error they add and keep the most sensitive
   ones in float (1, 2, 4, ... nodes) until one fits;
5. time the passing candidates interleaved on the host (batch 1, pinned threads), project the numbers onto the
   target hardware class (or take a device-reported benchmark), choose, and build the signed bundle.

The manifest holds only deterministic fields (fidelity rounded, no timings), so equal inputs give
byte-identical
bundles whenever the same variant is chosen; timings are in :class:`CompileResult` and its report. Nothing is
written anywhere: the caller stores ``bundle`` only after a successful return, and an unreachable budget
raises
:class:`edgefleet.core.errors.InvalidSpecError` whose message carries the full report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import pathlib
import tempfile
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from cryptography.hazmat.primitives.asymmetric import ed25519

import edgefleet
from edgefleet.adapters import bundle
from edgefleet.api import modeldeployment
from edgefleet.compiler import datasets, fidelity, measure, passes, selection
from edgefleet.core import errors

log = logging.getLogger(__name__)
Array = np.ndarray[Any, Any]
Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Hardware:
    """A hardware class: instruction-set features, execution providers and the threads a model gets."""

    name: str
    features: frozenset[str]
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int = 1


def host_hardware(name: str = "host", threads: int = 1) -> Hardware:
    """This machine as a hardware class."""
    return Hardware(name=name, features=passes.cpu_features(), threads=threads)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Effort knobs. Defaults suit small edge models on a 2-core build host."""

    latency_rounds: int = 7
    round_seconds: float = 0.03
    calibration_samples: int = 128
    sensitivity_samples: int = 64
    fallback_steps: int = 6  # keep at most 1, 2, 4, ... 32 nodes in float before giving up on INT8
    golden_samples: int = 3
    tolerance: float = 0.05
    measure_all: bool = False  # also time candidates that fail the gate (for benchmarks)


@dataclasses.dataclass(frozen=True)
class CompileResult:
    """The outcome: the signed bundle, the chosen variant, and every candidate's numbers."""

    digest: str
    bundle: bytes
    manifest: Mapping[str, Any]
    model: bytes
    selected: selection.Candidate
    candidates: tuple[selection.Candidate, ...]
    reason: str
    detail: str
    report: str

    @property
    def fp32(self) -> selection.Candidate:
        """The optimised FP32 reference candidate."""
        return next(c for c in self.candidates if c.name == "fp32")

    @property
    def speedup(self) -> float | None:
        """FP32 p50 latency over the selected variant's (``None`` when either was not measured)."""
        ref, sel = self.fp32.latency, self.selected.latency
        if ref is None or sel is None or sel.p50 <= 0:
            return None
        return ref.p50 / sel.p50

    @property
    def accuracy_delta(self) -> float:
        """What the gate judged for the selected variant: accuracy drop or relative error against FP32."""
        return selection.severity(self.manifest["model"]["task"], self.selected.fidelity)


@dataclasses.dataclass
class _Built:
    plan: selection.Plan
    model: bytes | None
    options: dict[str, Any]
    error: str | None
    seconds: float
    outputs: list[Array] | None = None
    fidelity: dict[str, float] = dataclasses.field(default_factory=dict)


def compile_model(
    source: bytes,
    target: modeldeployment.CompileTarget,
    task: str,
    *,
    evaluation: bytes,
    calibration: bytes | None = None,
    model_name: str,
    model_version: str,
    signing_key: ed25519.Ed25519PrivateKey,
    hardware: Hardware | None = None,
    device_benchmarks: Mapping[str, selection.Latency] | None = None,
    settings: Settings = Settings(),
    progress: Progress | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> CompileResult:
    """Compile ``source`` (FP32 ONNX bytes) for ``target``; see the module docstring.

    ``evaluation``/``calibration`` are ``.npz`` bytes. ``hardware`` describes the target class (default: this
    host). ``device_benchmarks`` maps candidate names to latencies reported by a device of the target class
    and
    replaces host timings for those candidates. Raises ``InvalidSpecError`` when the inputs are unusable or no
    candidate meets the budget.
    """
    say = progress or (lambda _msg: None)
    where = f"compile target {target.name!r}"
    host = host_hardware(threads=hardware.threads if hardware else 1)
    hw = hardware or host
    try:
        source_proto = passes.load_source(source)
        eval_arrays = datasets.load(evaluation, "evaluation set")
        calib_arrays = datasets.load(calibration, "calibration set") if calibration is not None else None
    except (passes.PassError, datasets.DatasetError) as exc:
        raise errors.InvalidSpecError(f"{where}: {exc}", reason="InvalidInput") from exc

    say("Optimising FP32")
    start = clock()
    try:
        fp32_model = passes.optimize(passes.serialize(passes.normalize(source_proto)))
        reference_session = measure.session(source, threads=hw.threads)
        inputs, _ = measure.signature(reference_session)
        eval_feed = datasets.check_against(eval_arrays, inputs, "evaluation set")
        calib_feeds = None
        if calib_arrays is not None:
            calib_feeds = datasets.samples(
                datasets.check_against(calib_arrays, inputs, "calibration set"), settings.calibration_samples
            )
        reference = measure.run_dataset(reference_session, eval_feed)
    except (passes.PassError, datasets.DatasetError, measure.RunError) as exc:
        raise errors.InvalidSpecError(f"{where}: {exc}", reason="InvalidInput") from exc
    fp32_seconds = clock() - start
    labels = datasets.labels(eval_arrays)

    q = target.quantization
    choices = selection.QuantizationChoices(
        method=q.method if q else "auto",
        format=q.format if q else "auto",
        per_channel=q.per_channel if q else None,
        calibration_method=q.calibration_method if q else "auto",
        reduce_range=q.reduce_range if q else None,
        exclude_nodes=tuple(q.exclude_nodes or ()) if q else (),
    )
    if target.precision == "int8" and choices.method == "static" and calib_feeds is None:
        raise errors.InvalidSpecError(
            f"{where}: quantization.method static needs a calibration set; set spec.compile.targets[].calibration"
        )
    plans = selection.plan_candidates(target.precision, choices, has_calibration=calib_feeds is not None)

    base_model = fp32_model
    pruned_share = None
    if target.pruning is not None and target.pruning.sparsity > 0:
        base_model, pruned_share = passes.prune(fp32_model, target.pruning.sparsity)
        plans.insert(1, selection.Plan("fp32-pruned", "fp32", "fp32", {"pruned": True}))

    quant_base = base_model
    if any(p.precision == "int8" for p in plans):
        say("Pre-processing for quantization")
        quant_base, _ = passes.preprocess(base_model)

    built: list[_Built] = []
    with tempfile.TemporaryDirectory(prefix="edgefleet-calib-") as cache:
        cache_dir = pathlib.Path(cache)
        for plan in plans:
            say(f"Building {plan.name}")
            if plan.name == "fp32":
                item = _Built(plan, fp32_model, {}, None, fp32_seconds)
            else:
                item = _build(
                    plan,
                    quant_base if plan.precision == "int8" else base_model,
                    calib_feeds,
                    cache_dir,
                    clock,
                )
                if pruned_share is not None and item.model is not None:
                    item.model, packed = passes.pack_sparse(item.model)
                    item.options["pruning"] = {"sparsity": round(pruned_share, 4), "sparseTensors": packed}
            _evaluate(item, task, eval_feed, reference, labels, hw.threads)
            built.append(item)
        if target.precision in ("auto", "int8"):
            built += _sensitivity_fallback(
                built,
                quant_base,
                task,
                target,
                eval_feed,
                reference,
                labels,
                calib_feeds,
                cache_dir,
                hw.threads,
                settings,
                say,
                clock,
            )

    budget = selection.Budget(target.accuracy_budget.max_accuracy_drop, target.accuracy_budget.max_relative_error)
    timed: dict[str, selection.Latency] = {}
    if device_benchmarks is None:
        say("Measuring latency")
        timed = _time_candidates(built, task, budget, eval_feed, hw, settings, clock)
    elif "fp32" not in device_benchmarks:
        raise errors.InvalidSpecError(f"{where}: the device benchmark has no fp32 entry to compare against")
    fp32_latency = timed.get("fp32")
    candidates = []
    for item in built:
        lat: selection.Latency | None
        if device_benchmarks is not None:
            # A device benchmark replaces host timings wholesale: mixing the two would compare unlike clocks.
            lat = device_benchmarks.get(item.plan.name)
        else:
            lat = timed.get(item.plan.name)
            if lat is not None and fp32_latency is not None:
                lat = selection.project_latency(_candidate(item, lat), fp32_latency, host.features, hw.features)
        candidates.append(_candidate(item, lat))
    choice = selection.choose(
        task, candidates, budget, target.precision, target.optimize_for, tolerance=settings.tolerance
    )
    rows = selection.report_rows(candidates, choice)
    report = selection.format_report(rows)
    if choice.selected is None:
        raise errors.InvalidSpecError(
            f"{where}: precision {target.precision} cannot meet the accuracy budget "
            f"(maxAccuracyDrop {budget.max_accuracy_drop}, maxRelativeError {budget.max_relative_error}); "
            f"nothing was published. Relax spec.compile.targets[].accuracyBudget, choose another precision, "
            f"or exclude sensitive nodes via quantization.excludeNodes.\n{report}",
            reason="AccuracyBudgetUnreachable",
        )
    selected = choice.selected
    chosen = next(b for b in built if b.plan.name == selected.name)
    assert chosen.model is not None
    say(f"Signing {selected.name}")
    manifest = _manifest(
        source=source,
        target=target,
        task=task,
        model_name=model_name,
        model_version=model_version,
        hardware=hw,
        chosen=chosen,
        choice=choice,
        candidates=candidates,
        evaluation=evaluation,
        calibration=calibration,
        eval_feed=eval_feed,
        settings=settings,
    )
    digest, data = bundle.build(manifest, chosen.model, signing_key)
    log.info(
        "Compiled model %s %s for %s variant=%s digest=%s",
        model_name,
        model_version,
        target.name,
        selected.name,
        digest,
    )
    return CompileResult(
        digest=digest,
        bundle=data,
        manifest=manifest,
        model=chosen.model,
        selected=selected,
        candidates=tuple(candidates),
        reason=choice.reason,
        detail=choice.detail,
        report=report,
    )


def _build(
    plan: selection.Plan,
    base: bytes,
    calib: Sequence[Mapping[str, Array]] | None,
    cache_dir: pathlib.Path,
    clock: Callable[[], float],
) -> _Built:
    start = clock()
    o = dict(plan.options)
    try:
        options: dict[str, Any]
        if plan.kind == "fp32":
            model, options = base, {}
        elif plan.kind == "fp16":
            model, options = passes.to_fp16(base), {"keepIoTypes": True}
        elif plan.kind == "dynamic":
            model, options = passes.quantize_dynamic(
                base,
                per_channel=bool(o.get("per_channel")),
                reduce_range=bool(o.get("reduce_range")),
                exclude_nodes=_names(o.get("exclude_nodes")),
            )
        else:
            assert calib is not None
            model, options = passes.quantize_static(
                base,
                calib,
                quant_format=str(o["quant_format"]),
                per_channel=bool(o["per_channel"]),
                method=str(o["method"]),
                activation_type=str(o["activation_type"]),
                weight_type=str(o["weight_type"]),
                reduce_range=bool(o["reduce_range"]),
                exclude_nodes=_names(o.get("exclude_nodes")),
                cache_dir=cache_dir,
            )
        passes.check_loadable(model)
    except passes.PassError as exc:
        return _Built(plan, None, {}, str(exc), clock() - start)
    return _Built(plan, model, options, None, clock() - start)


def _names(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, (list, tuple)) else ()


def _evaluate(
    item: _Built,
    task: str,
    feed: Mapping[str, Array],
    reference: Sequence[Array],
    labels: Array | None,
    threads: int,
) -> None:
    if item.model is None:
        return
    try:
        item.outputs = measure.run_dataset(measure.session(item.model, threads=threads), feed)
    except measure.RunError as exc:
        item.error = str(exc)
        item.model = None
        return
    item.fidelity = fidelity.measure(task, item.outputs, reference, labels)


def _sensitivity_fallback(
    built: list[_Built],
    base: bytes,
    task: str,
    target: modeldeployment.CompileTarget,
    feed: Mapping[str, Array],
    reference: Sequence[Array],
    labels: Array | None,
    calib: Sequence[Mapping[str, Array]] | None,
    cache_dir: pathlib.Path,
    threads: int,
    settings: Settings,
    say: Progress,
    clock: Callable[[], float],
) -> list[_Built]:
    """When no INT8 candidate passes, keep the most sensitive weight nodes of the best QDQ one in float."""
    budget = selection.Budget(target.accuracy_budget.max_accuracy_drop, target.accuracy_budget.max_relative_error)
    int8 = [b for b in built if b.plan.precision == "int8" and b.model is not None]
    if any(selection.gate(task, b.fidelity, budget).passed for b in int8):
        return []
    qdq = [b for b in int8 if b.plan.kind == "static" and b.options.get("format") == "QDQ"]
    if not qdq or calib is None:
        return []
    best = min(qdq, key=lambda b: (selection.severity(task, b.fidelity), b.plan.name))
    assert best.model is not None
    say(f"Ranking node sensitivity of {best.plan.name}")
    try:
        ranked = _rank_sensitivity(base, best.model, feed, settings.sensitivity_samples, threads)
    except (measure.RunError, passes.PassError) as exc:
        log.info("Skipped sensitivity ranking: %s", exc)
        return []
    out: list[_Built] = []
    already = _names(best.plan.options.get("exclude_nodes"))
    for keep in selection.exclusion_steps(ranked)[: settings.fallback_steps]:
        name = f"{best.plan.name}-float{len(keep)}"
        say(f"Building {name}")
        plan = selection.Plan(name, "int8", "static", {**best.plan.options, "exclude_nodes": already + keep})
        item = _build(plan, base, calib, cache_dir, clock)
        _evaluate(item, task, feed, reference, labels, threads)
        out.append(item)
        if item.model is not None and selection.gate(task, item.fidelity, budget).passed:
            break
    return out


def _rank_sensitivity(fp32: bytes, quantized: bytes, feed: Mapping[str, Array], limit: int, threads: int) -> list[str]:
    """Nodes, most sensitive first: the error a node adds (at its output, over its worst input) vs FP32.

    Every node with a float output counts, not only weight nodes: in reconstruction-error heads the damage is
    done by element-wise arithmetic on small differences, which is cheap to keep in float.
    """
    proto = onnx.load_model_from_string(fp32)
    float_tensors = {
        v.name for v in proto.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    } | {v.name for v in proto.graph.output}
    nodes = [n for n in proto.graph.node if n.output and n.output[0] in float_tensors and n.name]
    if not nodes:  # no shape information: fall back to the weight nodes, whose outputs are float by construction
        inits = {t.name for t in proto.graph.initializer}
        nodes = [n for n in proto.graph.node if n.op_type in passes.WEIGHT_OPS and any(i in inits for i in n.input)]
    tensors = sorted({n.output[0] for n in nodes})
    # In a QDQ graph consumers read "<tensor>_DequantizeLinear_Output"; that is the value to compare.
    q_proto = onnx.load_model_from_string(quantized)
    q_tensors = {o for n in q_proto.graph.node for o in n.output}
    q_name = {t: f"{t}_DequantizeLinear_Output" for t in tensors if f"{t}_DequantizeLinear_Output" in q_tensors}
    count = len(next(iter(feed.values())))
    sessions = []
    for model, names in ((fp32, tensors), (quantized, [q_name.get(t, t) for t in tensors])):
        sess = measure.session(_expose(model, names), threads=threads)
        sessions.append((sess, [o.name for o in sess.get_outputs()]))
    diff: dict[str, float] = {}
    scale: dict[str, float] = {}
    for i in range(min(count, limit)):
        sample = {k: v[i : i + 1] for k, v in feed.items()}
        try:
            ref = dict(zip(sessions[0][1], sessions[0][0].run(None, sample), strict=True))
            got = dict(zip(sessions[1][1], sessions[1][0].run(None, sample), strict=True))
        except Exception as exc:  # onnxruntime's own exception types
            raise measure.RunError(f"inference failed while ranking sensitivity: {exc}") from exc
        for name in tensors:
            qn = q_name.get(name, name)
            if name in ref and qn in got and np.shape(ref[name]) == np.shape(got[qn]):
                r = np.asarray(ref[name], dtype=np.float64)
                diff[name] = diff.get(name, 0.0) + float(np.sum(np.abs(np.asarray(got[qn], np.float64) - r)))
                scale[name] = scale.get(name, 0.0) + float(np.sum(np.abs(r)))

    producer = {o: n for n in proto.graph.node for o in n.output}

    def err(name: str, depth: int = 0) -> float:
        # A tensor the quantizer folded away (e.g. the input of a removed Relu) inherits its producer's
        # inputs.
        if name in diff:
            return diff[name] / max(scale[name], 1e-12)
        node = producer.get(name)
        if node is None or depth > 8:
            return 0.0
        return max([err(i, depth + 1) for i in node.input if i] + [0.0])

    scores: dict[str, float] = {}
    for n in nodes:
        score = err(n.output[0]) - max([err(i) for i in n.input if i] + [0.0])
        scores[n.name] = max(scores.get(n.name, score), score)
        # Blame producers whose outputs vanished too: excluding only the survivor would not restore them.
        for i in n.input:
            if i and i not in diff and i in producer and producer[i].name:
                scores[producer[i].name] = max(scores.get(producer[i].name, score), score)
    return sorted(scores, key=lambda n: (-scores[n], n))


def _expose(model: bytes, tensors: Sequence[str]) -> bytes:
    proto = onnx.load_model_from_string(model)
    present = {o for n in proto.graph.node for o in n.output}
    existing = {o.name for o in proto.graph.output}
    for name in tensors:
        if name in present and name not in existing:
            proto.graph.output.append(onnx.ValueInfoProto(name=name))
    return passes.serialize(proto)


def _time_candidates(
    built: Sequence[_Built],
    task: str,
    budget: selection.Budget,
    feed: Mapping[str, Array],
    hw: Hardware,
    settings: Settings,
    clock: Callable[[], float],
) -> dict[str, selection.Latency]:
    sessions = {}
    for item in built:
        if item.model is None:
            continue
        passed = selection.gate(task, item.fidelity, budget).passed
        if not settings.measure_all and item.plan.name != "fp32" and not passed:
            continue
        try:
            sessions[item.plan.name] = measure.session(item.model, threads=hw.threads)
        except measure.RunError as exc:
            item.error = str(exc)
    sample = datasets.samples(dict(feed), 1)[0]
    try:
        return measure.latencies(
            sessions,
            sample,
            rounds=settings.latency_rounds,
            round_seconds=settings.round_seconds,
            clock=clock,
        )
    except measure.RunError as exc:
        raise errors.InvalidSpecError(f"latency measurement failed: {exc}") from exc


def _candidate(item: _Built, latency: selection.Latency | None) -> selection.Candidate:
    size = len(item.model) if item.model is not None else 0
    return selection.Candidate(
        name=item.plan.name,
        precision=item.plan.precision,
        size_bytes=size,
        compressed_bytes=len(zlib.compress(item.model, 6)) if item.model is not None else 0,
        fidelity=item.fidelity,
        latency=latency,
        error=item.error,
        options=item.options,
        compile_seconds=item.seconds,
    )


GOLDEN_TOLERANCE = {"fp32": (1e-3, 1e-3), "fp16": (1e-2, 1e-2), "int8": (5e-2, 5e-2)}


def _manifest(
    *,
    source: bytes,
    target: modeldeployment.CompileTarget,
    task: str,
    model_name: str,
    model_version: str,
    hardware: Hardware,
    chosen: _Built,
    choice: selection.Choice,
    candidates: Sequence[selection.Candidate],
    evaluation: bytes,
    calibration: bytes | None,
    eval_feed: Mapping[str, Array],
    settings: Settings,
) -> dict[str, Any]:
    assert chosen.model is not None
    sess = measure.session(chosen.model, threads=hardware.threads)
    inputs, outputs = measure.signature(sess)
    golden = []
    scale = 0.0
    for feed in datasets.samples(dict(eval_feed), settings.golden_samples):
        result = [np.asarray(o) for o in sess.run(None, feed)]
        scale = max([scale] + [float(np.max(np.abs(r))) for r in result if r.size])
        golden.append(
            {
                "inputs": {k: bundle.encode_array(v) for k, v in sorted(feed.items())},
                "outputs": {o.name: bundle.encode_array(r) for o, r in zip(outputs, result, strict=True)},
            }
        )
    rtol, atol_factor = GOLDEN_TOLERANCE[chosen.plan.precision]
    atol = float(f"{max(atol_factor * scale, 1e-5):.3g}")
    fp32 = next(c for c in candidates if c.name == "fp32")
    selected = next(c for c in candidates if c.name == chosen.plan.name)
    features = sorted(hardware.features & (selection.INT8_DOT_FEATURES | selection.FP16_FEATURES | _BASE_FEATURES))
    return {
        "schemaVersion": 1,
        "model": {
            "name": model_name,
            "version": model_version,
            "task": task,
            "sourceSha256": hashlib.sha256(source).hexdigest(),
        },
        "target": {
            "name": target.name,
            "features": features,
            "providers": list(hardware.providers),
            "threads": hardware.threads,
        },
        "variant": {"name": chosen.plan.name, "precision": chosen.plan.precision, "reason": choice.reason},
        "compileOptions": {
            "precision": target.precision,
            "optimizeFor": target.optimize_for,
            "accuracyBudget": target.accuracy_budget.model_dump(by_alias=True, mode="json"),
            "quantization": target.quantization.model_dump(by_alias=True, mode="json", exclude_none=True)
            if target.quantization
            else None,
            "pruning": target.pruning.model_dump(by_alias=True, mode="json") if target.pruning else None,
            "variantOptions": _jsonable(chosen.options),
            "evaluationSha256": hashlib.sha256(evaluation).hexdigest(),
            "calibrationSha256": hashlib.sha256(calibration).hexdigest() if calibration is not None else None,
            "toolchain": {
                "edgefleet": edgefleet.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": ort.__version__,
            },
        },
        "io": {
            "inputs": [{"name": i.name, "dtype": i.dtype, "shape": list(i.shape)} for i in inputs],
            "outputs": [{"name": o.name, "dtype": o.dtype, "shape": list(o.shape)} for o in outputs],
        },
        "golden": {"samples": golden, "rtol": rtol, "atol": atol},
        "measurements": {
            "sizeBytes": selected.size_bytes,
            "compressedBytes": selected.compressed_bytes,
            "fp32SizeBytes": fp32.size_bytes,
            "sizeRatio": round(fp32.size_bytes / selected.size_bytes, 4) if selected.size_bytes else None,
            # Host timings differ between runs; they stay out of the signed manifest (see
            # CompileResult.report).
            "latencyP50Ms": None,
            "latencyP95Ms": None,
            "fidelity": fidelity.rounded(selected.fidelity),
            "evaluationSamples": len(next(iter(eval_feed.values()))),
            "candidates": [
                {
                    "name": c.name,
                    "precision": c.precision,
                    "sizeBytes": c.size_bytes,
                    "fidelity": fidelity.rounded(c.fidelity),
                    "verdict": choice.verdicts[c.name].reason,
                }
                for c in candidates
            ],
        },
    }


_BASE_FEATURES = frozenset({"sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "neon", "asimd"})


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
