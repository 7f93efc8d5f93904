"""Candidate variants while they are built, evaluated and timed: the compiler's working records (adapter).

A :class:`Variant` follows one :class:`~edgefleet.compiler.selection.Recipe` through the pipeline: the model bytes the
passes produced (``None`` once it failed), the options they actually used, how long the build took, its outputs on
the evaluation set and its fidelity against FP32. A variant that fails to build, load or run keeps its error and stays
in the report instead of aborting the compile. :func:`candidate` turns a variant into the pure
:class:`~edgefleet.compiler.selection.Candidate` the selection rule judges.
"""

from __future__ import annotations

import dataclasses
import pathlib
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from edgefleet.compiler import datasets, fidelity, measurement, passes, selection
from edgefleet.core import errors

Array = np.ndarray[Any, Any]
Clock = Callable[[], float]


@dataclasses.dataclass
class Variant:
    """One candidate being built: its recipe, model (``None`` after a failure), pass options, error and numbers."""

    recipe: selection.Recipe
    model: bytes | None
    options: dict[str, Any]
    error: str | None
    seconds: float
    fidelity: dict[str, float] = dataclasses.field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    samples: int = 0
    size_bytes: int = 0
    compressed_bytes: int = 0

    def sized(self) -> Variant:
        """Record the model's size and zlib-compressed size (kept when the bytes are dropped); returns self."""
        if self.model is not None:
            self.size_bytes = len(self.model)
            self.compressed_bytes = len(zlib.compress(self.model, 6))
        return self

    def drop(self) -> None:
        """Forget the model's bytes (a candidate that cannot ship), keeping its numbers."""
        self.model = None

    @property
    def lossy(self) -> bool:
        """False for optimised FP32 (numerically the source), True for every variant that changes the numbers."""
        return not (self.recipe.kind == "fp32" and not self.recipe.options.get("pruned"))


def build(
    recipe: selection.Recipe,
    base: bytes,
    calib: Sequence[Mapping[str, Array]] | None,
    cache_dir: pathlib.Path,
    clock: Clock,
    stride: int | None = None,
) -> Variant:
    """Run the passes of ``recipe`` on ``base``; a pass that fails leaves its error on the variant.

    ``stride`` is the calibration stride of the memory plan (:func:`edgefleet.compiler.memory.plan`)."""
    start = clock()
    o = dict(recipe.options)
    try:
        options: dict[str, Any]
        if recipe.kind == "fp32":
            model, options = base, {}
        elif recipe.kind == "fp16":
            model, options = passes.to_fp16(base), {"keepIoTypes": True}
        elif recipe.kind == "dynamic":
            model, options = passes.quantize_dynamic(
                base,
                per_channel=bool(o.get("per_channel")),
                reduce_range=bool(o.get("reduce_range")),
                exclude_nodes=names(o.get("exclude_nodes")),
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
                exclude_nodes=names(o.get("exclude_nodes")),
                cache_dir=cache_dir,
                stride=stride,
            )
        model = passes.tidy(model)
        passes.check_loadable(model)
    except errors.InvalidSpecError as exc:
        return Variant(recipe, None, {}, str(exc), clock() - start)
    return Variant(recipe, model, options, None, clock() - start)


def names(value: object) -> tuple[str, ...]:
    """Node names from a recipe option (a list or tuple of them; anything else is none)."""
    return tuple(str(v) for v in value) if isinstance(value, (list, tuple)) else ()


def evaluate(
    variant: Variant,
    task: str,
    feed: Mapping[str, Array],
    reference: Sequence[Array],
    labels: Array | None,
    threads: int,
    chunk: int = 64,
) -> None:
    """Run ``variant`` on the evaluation set (``chunk`` samples at a time) and record its fidelity against
    ``reference`` with confidence intervals (or its error). The outputs are not kept: only the figures are needed."""
    if variant.model is None:
        return
    try:
        outputs = measurement.run_dataset(measurement.session(variant.model, threads=threads), feed, chunk=chunk)
    except errors.InvalidSpecError as exc:
        variant.error = str(exc)
        variant.model = None
        return
    variant.fidelity = fidelity.measure(task, outputs, reference, labels)
    variant.intervals = fidelity.intervals(task, outputs, reference, labels)
    variant.samples = len(next(iter(feed.values())))


def verdict(variant: Variant, task: str, budget: selection.Budget) -> selection.GateVerdict:
    """The gate's verdict on ``variant``'s fidelity, sample size included."""
    if variant.model is None:
        return selection.GateVerdict(False, f"failed: {variant.error}", "fail")
    return selection.gate(task, variant.fidelity, budget, variant.intervals, variant.samples, variant.lossy)


def time_all(
    variants: Sequence[Variant],
    task: str,
    budget: selection.Budget,
    feed: Mapping[str, Array],
    *,
    threads: int,
    rounds: int,
    round_seconds: float,
    measure_all: bool,
    clock: Clock,
) -> dict[str, selection.Latency]:
    """Interleaved host latency of FP32 and every variant that passes the gate (every built one with ``measure_all``).

    A variant whose session cannot be created keeps the error; a failure while timing fails the compile.
    """
    sessions = {}
    for variant in variants:
        if variant.model is None:
            continue
        passed = verdict(variant, task, budget).passed
        if not measure_all and variant.recipe.name != "fp32" and not passed:
            continue
        try:
            sessions[variant.recipe.name] = measurement.session(variant.model, threads=threads)
        except errors.InvalidSpecError as exc:
            variant.error = str(exc)
    sample = datasets.samples(dict(feed), 1)[0]
    try:
        return measurement.latencies(sessions, sample, rounds=rounds, round_seconds=round_seconds, clock=clock)
    except errors.InvalidSpecError as exc:
        raise errors.InvalidSpecError(f"latency measurement failed: {exc}") from exc


def candidate(variant: Variant, latency: selection.Latency | None) -> selection.Candidate:
    """The numbers of ``variant`` for the selection rule (``latency`` already projected onto the target)."""
    return selection.Candidate(
        name=variant.recipe.name,
        precision=variant.recipe.precision,
        size_bytes=variant.size_bytes,
        compressed_bytes=variant.compressed_bytes,
        fidelity=variant.fidelity,
        latency=latency,
        error=variant.error,
        options=variant.options,
        compile_seconds=variant.seconds,
        intervals=variant.intervals,
        samples=variant.samples,
        lossy=variant.lossy,
    )


__all__ = ["Variant", "build", "candidate", "evaluate", "names", "time_all", "verdict"]
