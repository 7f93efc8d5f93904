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
    outputs: list[Array] | None = None
    fidelity: dict[str, float] = dataclasses.field(default_factory=dict)


def build(
    recipe: selection.Recipe,
    base: bytes,
    calib: Sequence[Mapping[str, Array]] | None,
    cache_dir: pathlib.Path,
    clock: Clock,
) -> Variant:
    """Run the passes of ``recipe`` on ``base``; a pass that fails leaves its error on the variant."""
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
            )
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
) -> None:
    """Run ``variant`` on the evaluation set and record its fidelity against ``reference`` (or its error)."""
    if variant.model is None:
        return
    try:
        variant.outputs = measurement.run_dataset(measurement.session(variant.model, threads=threads), feed)
    except errors.InvalidSpecError as exc:
        variant.error = str(exc)
        variant.model = None
        return
    variant.fidelity = fidelity.measure(task, variant.outputs, reference, labels)


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
        passed = selection.gate(task, variant.fidelity, budget).passed
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
    model = variant.model
    return selection.Candidate(
        name=variant.recipe.name,
        precision=variant.recipe.precision,
        size_bytes=len(model) if model is not None else 0,
        compressed_bytes=len(zlib.compress(model, 6)) if model is not None else 0,
        fidelity=variant.fidelity,
        latency=latency,
        error=variant.error,
        options=variant.options,
        compile_seconds=variant.seconds,
    )


__all__ = ["Variant", "build", "candidate", "evaluate", "names", "time_all"]
