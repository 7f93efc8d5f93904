"""The optimising compiler: build candidate variants, measure them, gate them, choose one, write its manifest.

:func:`compile_model` is the library entry point (``edgefleet compile`` calls it directly, the operator's compile
worker through :func:`compile_request`). It is a pipeline of adapters around one pure decision
(:func:`edgefleet.compiler.selection.choose`):

1. parse the source model and datasets (hostile input: size limits, no pickles, shape checks;
   :mod:`~edgefleet.compiler.passes`, :mod:`~edgefleet.compiler.datasets`);
2. normalise (Constant-node weights to initializers, shape inference when possible) and optimise FP32 offline;
3. build every planned candidate (FP16, INT8 dynamic, INT8 static QDQ/QOperator with several calibration methods,
   optionally on a magnitude-pruned model; :mod:`~edgefleet.compiler.candidates`); a candidate that fails to build
   or load is kept in the report with its error instead of aborting the compile;
4. run every candidate on the evaluation set and compute fidelity against FP32; when no INT8 candidate passes the
   gate, rank the nodes of the best QDQ candidate by the error they add and keep the most sensitive ones in float
   (1, 2, 4, ... nodes) until one fits (:mod:`~edgefleet.compiler.sensitivity`);
5. time the passing candidates interleaved on the host (batch 1, pinned threads), project the numbers onto the
   target hardware class (or take a device-reported benchmark), choose, and write the manifest
   (:mod:`~edgefleet.compiler.manifest`).

The result is an unsigned :class:`~edgefleet.compiler.jobs.CompiledModel`; whoever publishes it signs it. Nothing is
written anywhere. Unusable inputs raise ``InvalidSpecError(reason=Reason.INVALID_INPUT)``; a budget no candidate
meets raises ``InvalidSpecError(reason=Reason.ACCURACY_GATE_FAILED)`` whose message carries the full report.
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
    passes,
    selection,
    sensitivity,
    sources,
)
from edgefleet.core import errors

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Effort:
    """How hard the compiler works. Defaults suit small edge models on a 2-core build host."""

    latency_rounds: int = 7
    round_seconds: float = 0.03
    calibration_samples: int = 128
    sensitivity_samples: int = 64
    fallback_steps: int = 6  # keep at most 1, 2, 4, ... 32 nodes in float before giving up on INT8
    golden_samples: int = 3
    tolerance: float = 0.05
    measure_all: bool = False  # also time candidates that fail the gate (for benchmarks)


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
    effort: Effort = Effort(),
    progress: Progress | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> jobs.CompiledModel:
    """Compile ``source`` (FP32 ONNX bytes) for ``target``; see the module docstring.

    ``evaluation``/``calibration`` are ``.npz`` bytes. ``target_hardware`` describes the target class (default:
    this host). ``device_benchmarks`` maps candidate names to latencies reported by a device of the target class and
    replaces host timings for those candidates. Raises ``InvalidSpecError`` when the inputs are unusable or no
    candidate meets the budget.
    """
    say = progress or (lambda _msg: None)
    where = f"compile target {target.name!r}"
    host = hardware.host(threads=target_hardware.threads if target_hardware else 1)
    hw = target_hardware or host
    try:
        source_proto = passes.load_source(source)
        eval_arrays = datasets.load(evaluation, "evaluation set")
        calib_arrays = datasets.load(calibration, "calibration set") if calibration is not None else None
    except errors.InvalidSpecError as exc:
        raise _invalid_input(where, exc) from exc

    say("Optimising FP32")
    start = clock()
    try:
        fp32_model = passes.optimize(passes.serialize(passes.normalize(source_proto)))
        reference_session = measurement.session(source, threads=hw.threads)
        inputs, _ = measurement.signature(reference_session)
        eval_feed = datasets.check_against(eval_arrays, inputs, "evaluation set")
        calib_feeds = None
        if calib_arrays is not None:
            calib_feeds = datasets.samples(
                datasets.check_against(calib_arrays, inputs, "calibration set"), effort.calibration_samples
            )
        reference = measurement.run_dataset(reference_session, eval_feed)
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
            f"{where}: quantization.method static needs a calibration set; set spec.compile.targets[].calibration"
        )
    recipes = selection.plan_candidates(target.precision, choices, has_calibration=calib_feeds is not None)

    base_model = fp32_model
    pruned_share = None
    if target.pruning is not None and target.pruning.sparsity > 0:
        base_model, pruned_share = passes.prune(fp32_model, target.pruning.sparsity)
        recipes.insert(1, selection.Recipe("fp32-pruned", "fp32", "fp32", {"pruned": True}))

    quant_base = base_model
    if any(r.precision == "int8" for r in recipes):
        say("Pre-processing for quantization")
        quant_base, _ = passes.preprocess(base_model)

    budget = selection.Budget(target.accuracy_budget.max_accuracy_drop, target.accuracy_budget.max_relative_error)
    built: list[candidates.Variant] = []
    with tempfile.TemporaryDirectory(prefix="edgefleet-calib-") as cache:
        cache_dir = pathlib.Path(cache)
        for recipe in recipes:
            say(f"Building {recipe.name}")
            if recipe.name == "fp32":
                variant = candidates.Variant(recipe, fp32_model, {}, None, fp32_seconds)
            else:
                variant = candidates.build(
                    recipe, quant_base if recipe.precision == "int8" else base_model, calib_feeds, cache_dir, clock
                )
                if pruned_share is not None and variant.model is not None:
                    variant.model, packed = passes.pack_sparse(variant.model)
                    variant.options["pruning"] = {"sparsity": round(pruned_share, 4), "sparseTensors": packed}
            candidates.evaluate(variant, task, eval_feed, reference, labels, hw.threads)
            built.append(variant)
        if target.precision in ("auto", "int8"):
            built += sensitivity.fallback(
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
            )

    timed: dict[str, selection.Latency] = {}
    if device_benchmarks is None:
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
    elif "fp32" not in device_benchmarks:
        raise errors.InvalidSpecError(f"{where}: the device benchmark has no fp32 entry to compare against")
    fp32_latency = timed.get("fp32")
    measured = []
    for variant in built:
        lat: selection.Latency | None
        if device_benchmarks is not None:
            # A device benchmark replaces host timings wholesale: mixing the two would compare unlike clocks.
            lat = device_benchmarks.get(variant.recipe.name)
        else:
            lat = timed.get(variant.recipe.name)
            if lat is not None and fp32_latency is not None:
                lat = selection.project_latency(
                    candidates.candidate(variant, lat), fp32_latency, host.features, hw.features
                )
        measured.append(candidates.candidate(variant, lat))
    choice = selection.choose(task, measured, budget, target.precision, target.optimize_for, tolerance=effort.tolerance)
    report = selection.format_report(selection.report_rows(measured, choice))
    if choice.selected is None:
        raise errors.InvalidSpecError(
            f"{where}: precision {target.precision} cannot meet the accuracy budget "
            f"(maxAccuracyDrop {budget.max_accuracy_drop}, maxRelativeError {budget.max_relative_error}); "
            f"nothing was published. Relax spec.compile.targets[].accuracyBudget, choose another precision, "
            f"or exclude sensitive nodes via quantization.excludeNodes.\n{report}",
            reason=errors.Reason.ACCURACY_GATE_FAILED,
        )
    selected = choice.selected
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
    log.info("Compiled model %s %s for %s variant=%s", model_name, model_version, target.name, selected.name)
    return jobs.CompiledModel(
        model=chosen.model,
        manifest=members,
        selected=selected,
        candidates=tuple(measured),
        reason=choice.reason,
        detail=choice.detail,
        report=report,
    )


def compile_request(request: jobs.CompileRequest) -> jobs.CompiledModel:
    """The optimising compiler as a compile job (:data:`edgefleet.compiler.jobs.OPTIMISING`, the operator's default).

    Fetches the source model and the target's evaluation/calibration sets (digests checked) and compiles for the
    target on this host's instruction set.
    """
    spec = modeldeployment.ModelDeploymentSpec.model_validate(request.spec)
    target = next(t for t in spec.compile.targets if t.name == request.target)
    source, evaluation, calibration = sources.fetch_inputs(spec, target)
    return compile_model(
        source,
        target,
        spec.model.task,
        evaluation=evaluation,
        calibration=calibration,
        model_name=spec.model.name,
        model_version=spec.model.version,
        target_hardware=hardware.host(name=target.name),
    )


def _invalid_input(where: str, exc: errors.InvalidSpecError) -> errors.InvalidSpecError:
    return errors.InvalidSpecError(f"{where}: {exc}", reason=errors.Reason.INVALID_INPUT)


__all__ = ["Effort", "Progress", "compile_model", "compile_request"]
