"""The optimising compiler: build candidate variants, measure them, gate them, choose one, write its manifest.

:func:`compile_model` is the library entry point (``edgefleet compile`` calls it directly, the operator's compile
worker through :func:`compile_request`). It is a pipeline of adapters around one pure decision
(:func:`edgefleet.compiler.selection.choose`):

1. parse the source model and datasets (hostile input: size limits, no pickles, shape checks;
   :mod:`~edgefleet.compiler.passes`, :mod:`~edgefleet.compiler.datasets`);
2. normalise (Constant-node weights to initializers, shape inference when possible) and optimise FP32 offline;
   measure one sample's intermediate tensors and plan calibration strides and evaluation chunks within the memory
   budget (:mod:`~edgefleet.compiler.memory`);
3. build every planned candidate (FP16, INT8 dynamic, INT8 static QDQ/QOperator with several calibration methods,
   optionally on a magnitude-pruned model; :mod:`~edgefleet.compiler.candidates`); a candidate that fails to build
   or load is kept in the report with its error instead of aborting the compile;
4. run every candidate on the evaluation set and compute fidelity against FP32 with confidence intervals; when no
   INT8 candidate passes the gate, try keeping the most sensitive nodes of the best QDQ candidate in float while
   that helps (:mod:`~edgefleet.compiler.sensitivity`);
5. time the passing candidates interleaved on the host (batch 1, pinned threads) when the host is of the target's
   hardware class, else take the numbers devices of the class reported (or ship FP32 until there are some and return
   the in-budget alternatives for them to benchmark); choose; record golden samples within their byte bound and
   write the manifest (:mod:`~edgefleet.compiler.manifest`).

The result is an unsigned :class:`~edgefleet.compiler.jobs.CompiledModel`; whoever publishes it signs it. Nothing is
written anywhere. Unusable inputs raise ``InvalidSpecError(reason=Reason.INVALID_INPUT)``; a budget no candidate
meets raises ``InvalidSpecError(reason=Reason.ACCURACY_GATE_FAILED)`` whose message carries the full report and
remedies named in the caller's :mod:`~edgefleet.compiler.vocabulary`.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import tempfile
import time
from collections.abc import Callable, Mapping

from edgefleet.api import modeldeployment
from edgefleet.compiler import (
    candidates,
    datasets,
    hardware,
    jobs,
    manifest,
    measurement,
    memory,
    passes,
    selection,
    sensitivity,
    sources,
    vocabulary,
)
from edgefleet.core import errors

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Effort:
    """How hard the compiler works. Defaults suit small edge models on a 2-core build host."""

    latency_rounds: int = 11
    round_seconds: float = 0.03
    calibration_samples: int = 128
    sensitivity_samples: int = 64
    fallback_steps: int = 6  # keep at most 1, 2, 4, ... 32 nodes in float, while each step helps
    golden_samples: int = 3
    tolerance: float = selection.DEFAULT_TOLERANCE
    measure_all: bool = False  # also time candidates that fail the gate (for benchmarks)
    memory_budget_bytes: int = memory.DEFAULT_BUDGET_BYTES
    max_alternatives: int = 3  # in-budget variants besides FP32 offered to devices (a request holds at most 4)


def compile_model(
    source: bytes,
    target: modeldeployment.CompileTarget,
    task: str,
    *,
    evaluation: bytes,
    calibration: bytes | None = None,
    model_name: str,
    model_version: str,
    target_hardware: hardware.Hardware | None = None,
    device_benchmarks: Mapping[str, selection.Latency] | None = None,
    represented: bool | None = None,
    target_class: str | None = None,
    effort: Effort = Effort(),
    progress: Progress | None = None,
    clock: Callable[[], float] = time.perf_counter,
    words: vocabulary.Vocabulary = vocabulary.KUBERNETES,
) -> jobs.CompiledModel:
    """Compile ``source`` (FP32 ONNX bytes) for ``target``; see the module docstring.

    ``evaluation``/``calibration`` are ``.npz`` bytes. ``target_hardware`` describes the target class (default:
    this host). ``target_class`` is the hardware class of the target's devices (default: that of
    ``target_hardware``); ``represented`` says whether host timings stand for it (default: the host is of that
    class). ``device_benchmarks`` maps candidate names to latencies devices of the target class
    measured; they replace host timings. Raises ``InvalidSpecError`` when the inputs are unusable or no candidate
    meets the budget; remedies use ``words``.
    """
    memory.reset_peak()
    say = progress or (lambda _msg: None)
    where = f"compile target {target.name!r}"
    host = hardware.host(threads=target_hardware.threads if target_hardware else 1)
    hw = target_hardware or host
    target_class = target_class or hw.hardware_class
    if represented is None:
        represented = target_class == host.hardware_class
    try:
        source_proto = passes.load_source(source)
        eval_arrays = datasets.load(evaluation, "evaluation set")
        calib_arrays = datasets.load(calibration, "calibration set") if calibration is not None else None
    except errors.InvalidSpecError as exc:
        raise _invalid_input(where, exc) from exc

    say("Optimising FP32")
    start = clock()
    notes: list[str] = []
    tried: list[str] = []  # what the sensitivity fallback tried, also for a failure's message
    try:
        normalized = passes.optimize(passes.serialize(passes.normalize(source_proto)))
        fp32_model = passes.tidy(normalized)
        reference_session = measurement.session(source, threads=hw.threads)
        inputs, _ = measurement.signature(reference_session)
        eval_feed = datasets.check_against(eval_arrays, inputs, "evaluation set")
        first = datasets.samples(dict(eval_feed), 1)[0]
        say("Planning memory")
        activation = memory.activation_bytes(
            lambda feed: measurement.session(passes.expose(normalized), threads=hw.threads).run(None, dict(feed)),
            first,
        )
        calib_count = min(effort.calibration_samples, len(next(iter(calib_arrays.values())))) if calib_arrays else 0
        plan = memory.plan(effort.memory_budget_bytes, activation, calib_count, measurement.batch_size(inputs))
        notes.append(plan.describe())
        calib_feeds = None
        if calib_arrays is not None:
            usable = calib_count - calib_count % plan.calibration_stride
            calib_feeds = datasets.samples(datasets.check_against(calib_arrays, inputs, "calibration set"), usable)
        reference = measurement.run_dataset(reference_session, eval_feed, chunk=plan.evaluation_chunk)
        del reference_session
    except errors.InvalidSpecError as exc:
        raise _invalid_input(where, exc) from exc
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
            f"{where}: quantization.method static needs a calibration set; set {words.calibration}"
        )
    recipes = selection.plan_candidates(target.precision, choices, has_calibration=calib_feeds is not None)

    base_model = normalized  # node names as in the source: quantization.excludeNodes names them
    pruned_share = None
    if target.pruning is not None and target.pruning.sparsity > 0:
        base_model, pruned_share = passes.prune(normalized, target.pruning.sparsity)
        recipes.insert(1, selection.Recipe("fp32-pruned", "fp32", "fp32", {"pruned": True}))

    quant_base = base_model
    if any(r.precision == "int8" for r in recipes):
        say("Pre-processing for quantization")
        quant_base, _ = passes.preprocess(base_model)

    budget = selection.Budget(target.accuracy_budget.max_accuracy_drop, target.accuracy_budget.max_relative_error)
    built: list[candidates.Variant] = []
    stride = plan.calibration_stride
    with tempfile.TemporaryDirectory(prefix="edgefleet-calib-") as cache:
        cache_dir = pathlib.Path(cache)
        for recipe in recipes:
            say(f"Building {recipe.name}")
            if recipe.name == "fp32":
                variant = candidates.Variant(recipe, fp32_model, {}, None, fp32_seconds)
            else:
                variant = candidates.build(
                    recipe,
                    quant_base if recipe.precision == "int8" else base_model,
                    calib_feeds,
                    cache_dir,
                    clock,
                    stride=stride,
                )
                if pruned_share is not None and variant.model is not None:
                    variant.model, packed = passes.pack_sparse(variant.model)
                    variant.options["pruning"] = {"sparsity": round(pruned_share, 4), "sparseTensors": packed}
            say(f"Evaluating {recipe.name}")
            candidates.evaluate(variant, task, eval_feed, reference, labels, hw.threads, chunk=plan.evaluation_chunk)
            built.append(variant.sized())
        if target.precision in ("auto", "int8"):
            outcome = sensitivity.fallback(
                built,
                quant_base,
                task,
                budget,
                eval_feed,
                reference,
                labels,
                calib_feeds,
                cache_dir,
                threads=hw.threads,
                samples=effort.sensitivity_samples,
                steps=effort.fallback_steps,
                say=say,
                clock=clock,
                chunk=plan.evaluation_chunk,
                stride=stride,
            )
            built += [v.sized() for v in outcome.variants]
            notes += outcome.notes
            tried = outcome.notes
    if not effort.measure_all:
        for variant in built:  # a candidate that cannot ship needs no bytes (and no memory) from here on
            if variant.recipe.name != "fp32" and not candidates.verdict(variant, task, budget).passed:
                variant.drop()

    timed: dict[str, selection.Latency] = {}
    if device_benchmarks is None and represented:
        say("Measuring latency")
        timed = candidates.time_all(
            built,
            task,
            budget,
            eval_feed,
            threads=hw.threads,
            rounds=effort.latency_rounds,
            round_seconds=effort.round_seconds,
            measure_all=effort.measure_all,
            clock=clock,
        )
    elif device_benchmarks is not None and "fp32" not in device_benchmarks:
        raise errors.InvalidSpecError(f"{where}: the device benchmark has no fp32 entry to compare against")
    measured = []
    for variant in built:
        lat: selection.Latency | None
        if device_benchmarks is not None:
            # A device benchmark replaces host timings wholesale: mixing the two would compare unlike clocks.
            lat = device_benchmarks.get(variant.recipe.name)
        elif represented:
            lat = timed.get(variant.recipe.name)
        else:
            lat = selection.Latency(0.0, 0.0) if variant.model is not None else None  # not measured on the class
        measured.append(candidates.candidate(variant, lat))
    on_target = device_benchmarks is not None or represented
    choice = selection.choose(
        task,
        measured,
        budget,
        target.precision,
        target.optimize_for,
        tolerance=effort.tolerance,
        measured_on_target=on_target,
    )
    if choice.selected is None:
        report = selection.format_report(selection.report_rows(measured, choice))
        undecided = any(v.state == "undecided" for v in choice.verdicts.values())
        raise errors.InvalidSpecError(
            f"{where}: precision {target.precision} cannot meet the accuracy budget "
            f"(maxAccuracyDrop {budget.max_accuracy_drop}, maxRelativeError {budget.max_relative_error}); "
            f"nothing was published. "
            + (
                f"The evaluation set ({measured[0].samples} samples) is too small to decide the budget for some "
                f"candidates (see 'undecided'); give {words.evaluation}, or "
                if undecided
                else ""
            )
            + f"relax {words.budget}, choose another precision ({words.precision}), "
            f"or keep sensitive nodes in float ({words.exclude_nodes}).\n{report}"
            + "".join(f"\n{note}" for note in tried),
            reason=errors.Reason.ACCURACY_GATE_FAILED,
        )
    selected = choice.selected
    alternatives: tuple[jobs.Alternative, ...] = ()
    if not on_target:
        # Devices of the class choose among these; every manifest says so, whichever one ships.
        neutral = "in budget; chosen by latency measured on devices of the target's hardware class (FP32 until then)"
        choice = dataclasses.replace(choice, reason=neutral)
        alternatives = tuple(
            _alternative(
                c,
                built,
                measured,
                choice,
                source,
                target,
                task,
                model_name,
                model_version,
                hw,
                evaluation,
                calibration,
                eval_feed,
                effort.golden_samples,
            )
            for c in _offered(measured, choice, task, selected, effort.max_alternatives)
        )
        notes.append(
            f"the compile host ({host.hardware_class}) is not of the target's hardware class ({target_class}): "
            f"FP32 until devices of the class report benchmarks of {', '.join(a.candidate.name for a in alternatives)}"
        )
    chosen = next(b for b in built if b.recipe.name == selected.name)
    assert chosen.model is not None
    say(f"Recording golden samples of {selected.name}")
    members = manifest.build(
        source=source,
        target=target,
        task=task,
        model_name=model_name,
        model_version=model_version,
        target_hardware=hw,
        chosen=chosen,
        choice=choice,
        all_candidates=measured,
        evaluation=evaluation,
        calibration=calibration,
        eval_feed=eval_feed,
        golden_samples=effort.golden_samples,
    )
    notes += [f"golden samples: {n}" for n in members.notes]
    # Exact for the selected variant; for the others, their model in this manifest (theirs differs by a few bytes).
    sizes = {
        c.name: manifest.bundle_bytes(c.size_bytes, members.manifest, len(members.golden))
        for c in measured
        if c.error is None
    }
    overhead = sizes[selected.name] - selected.size_bytes
    if overhead > manifest.MAX_OVERHEAD_BYTES:
        raise errors.InvalidSpecError(
            f"{where}: the bundle would add {overhead} bytes to its model, over the bound of "
            f"{manifest.MAX_OVERHEAD_BYTES} (golden samples {len(members.golden)} bytes); nothing was published",
            errors.Reason.BUNDLE_REJECTED,
        )
    report = selection.format_report(selection.report_rows(measured, choice, sizes))
    peak = memory.peak_bytes()
    notes.append(f"peak resident memory {memory.format_bytes(peak)}" if peak else "peak resident memory not measured")
    log.info("Compiled model %s %s for %s variant=%s", model_name, model_version, target.name, selected.name)
    return jobs.CompiledModel(
        model=chosen.model,
        manifest=members.manifest,
        selected=selected,
        candidates=tuple(measured),
        reason=choice.reason,
        detail=choice.detail,
        report=report,
        golden=members.golden,
        notes=tuple(notes),
        peak_rss_bytes=peak,
        bundle_bytes=sizes,
        hardware_class=None if on_target else target_class,
        alternatives=alternatives,
    )


def _offered(
    measured: list[selection.Candidate],
    choice: selection.Choice,
    task: str,
    selected: selection.Candidate,
    limit: int,
) -> list[selection.Candidate]:
    """The in-budget candidates worth a device benchmark: the best by gate figure of each precision, then others."""
    passing = [c for c in measured if choice.verdicts[c.name].passed and c is not selected]
    passing.sort(key=lambda c: (selection.severity(task, c.fidelity), c.size_bytes, c.name))
    offered: list[selection.Candidate] = []
    for c in passing:
        if c.precision not in {o.precision for o in offered}:
            offered.append(c)
    for c in passing:
        if c not in offered:
            offered.append(c)
    return offered[:limit]


def _alternative(
    candidate: selection.Candidate,
    built: list[candidates.Variant],
    measured: list[selection.Candidate],
    choice: selection.Choice,
    source: bytes,
    target: modeldeployment.CompileTarget,
    task: str,
    model_name: str,
    model_version: str,
    hw: hardware.Hardware,
    evaluation: bytes,
    calibration: bytes | None,
    eval_feed: Mapping[str, datasets.Array],
    golden_samples: int,
) -> jobs.Alternative:
    variant = next(b for b in built if b.recipe.name == candidate.name)
    assert variant.model is not None
    members = manifest.build(
        source=source,
        target=target,
        task=task,
        model_name=model_name,
        model_version=model_version,
        target_hardware=hw,
        chosen=variant,
        choice=choice,
        all_candidates=measured,
        evaluation=evaluation,
        calibration=calibration,
        eval_feed=eval_feed,
        golden_samples=golden_samples,
    )
    return jobs.Alternative(candidate, variant.model, members.manifest, members.golden)


def compile_request(request: jobs.CompileRequest, progress: Progress | None = None) -> jobs.CompiledModel:
    """The optimising compiler as a compile job (:data:`edgefleet.compiler.jobs.OPTIMISING`, the operator's default).

    Fetches the source model and the target's evaluation/calibration sets (digests checked) and compiles for the
    target within the request's memory budget. Host timings decide when the devices of the target report no class
    or only the compile host's; otherwise the target is compiled for the devices' class (FP32 and alternatives).
    """
    spec = modeldeployment.ModelDeploymentSpec.model_validate(request.spec)
    target = next(t for t in spec.compile.targets if t.name == request.target)
    source, evaluation, calibration = sources.fetch_inputs(spec, target)
    host = hardware.host(name=target.name)
    classes = sorted(set(request.device_classes))
    represented = not classes or classes == [host.hardware_class]
    return compile_model(
        source,
        target,
        spec.model.task,
        evaluation=evaluation,
        calibration=calibration,
        model_name=spec.model.name,
        model_version=spec.model.version,
        target_hardware=host,
        represented=represented,
        target_class=",".join(classes) if classes else None,
        effort=Effort(memory_budget_bytes=request.memory_budget_bytes),
        progress=progress,
    )


def _invalid_input(where: str, exc: errors.InvalidSpecError) -> errors.InvalidSpecError:
    return errors.InvalidSpecError(f"{where}: {exc}", reason=errors.Reason.INVALID_INPUT)


__all__ = ["Effort", "Progress", "compile_model", "compile_request"]
