"""Sensitivity-guided fallback: when no INT8 variant passes the gate, keep the nodes INT8 hurts most in float.

:func:`fallback` takes the best calibrated QDQ variant, ranks its nodes by the error each one adds against FP32
(:func:`rank`), and builds the variant again with the 1, 2, 4, ... most sensitive nodes excluded from quantization
(:func:`edgefleet.compiler.selection.exclusion_steps`) until one passes the gate, the steps run out, or a step
stops helping: a step whose gate figure is not lower than the best one so far ends the search (on pretrained
models keeping more nodes in float can *lower* agreement, because the float island's boundaries add
quantize/dequantize pairs). It is skipped altogether when the best INT8 variant is within the budget but the
evaluation set is too small to show it: more float nodes cannot make the set larger. Every variant it builds goes
into the report, and :attr:`Outcome.notes` says what it tried and why it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from edgefleet.compiler import candidates, measurement, passes, selection
from edgefleet.core import errors

log = logging.getLogger(__name__)
Array = np.ndarray[Any, Any]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The variants the fallback built and what it tried, in words, for the report."""

    variants: list[candidates.Variant]
    notes: list[str]


def fallback(
    built: Sequence[candidates.Variant],
    base: bytes,
    task: str,
    budget: selection.Budget,
    feed: Mapping[str, Array],
    reference: Sequence[Array],
    labels: Array | None,
    calib: Sequence[Mapping[str, Array]] | None,
    cache_dir: pathlib.Path,
    *,
    threads: int,
    samples: int,
    steps: int,
    say: Callable[[str], None],
    clock: Callable[[], float],
    chunk: int = 64,
    stride: int | None = None,
) -> Outcome:
    """When no INT8 variant passes, keep the most sensitive nodes of the best QDQ one in float (see the module)."""
    int8 = [b for b in built if b.recipe.precision == "int8" and b.model is not None]
    verdicts = [candidates.verdict(b, task, budget) for b in int8]
    if any(v.passed for v in verdicts):
        return Outcome([], [])
    qdq = [b for b in int8 if b.recipe.kind == "static" and b.options.get("format") == "QDQ"]
    if not qdq or calib is None:
        return Outcome([], ["sensitivity fallback: skipped (no calibrated QDQ variant to start from)"])
    best = min(qdq, key=lambda b: (selection.severity(task, b.fidelity), b.recipe.name))
    assert best.model is not None
    if candidates.verdict(best, task, budget).state == "undecided":
        return Outcome(
            [],
            [
                f"sensitivity fallback: skipped ({best.recipe.name} is within the budget but the evaluation set is "
                "too small to show it; keeping nodes in float cannot change that)"
            ],
        )
    say(f"Ranking node sensitivity of {best.recipe.name}")
    try:
        ranked = rank(base, best.model, feed, samples, threads)
    except errors.InvalidSpecError as exc:
        log.info("Skipped sensitivity ranking: %s", exc)
        return Outcome([], [f"sensitivity fallback: skipped (ranking failed: {exc})"])
    out: list[candidates.Variant] = []
    tried: list[str] = []
    already = candidates.names(best.recipe.options.get("exclude_nodes"))
    best_figure = selection.severity(task, best.fidelity)
    stop = f"ran out of steps ({steps})"
    for keep in selection.exclusion_steps(ranked)[:steps]:
        name = f"{best.recipe.name}-float{len(keep)}"
        say(f"Building {name}")
        recipe = selection.Recipe(name, "int8", "static", {**best.recipe.options, "exclude_nodes": already + keep})
        variant = candidates.build(recipe, base, calib, cache_dir, clock, stride=stride)
        candidates.evaluate(variant, task, feed, reference, labels, threads, chunk=chunk)
        out.append(variant)
        if variant.model is None:
            tried.append(f"{len(keep)} in float: failed")
            stop = "a step failed to build"
            break
        figure = selection.severity(task, variant.fidelity)
        tried.append(f"{len(keep)} in float: {figure:.4f}")
        if candidates.verdict(variant, task, budget).passed:
            stop = f"{name} passes the gate"
            break
        if not figure < best_figure:
            stop = f"keeping {len(keep)} nodes in float did not lower the figure ({best_figure:.4f} -> {figure:.4f})"
            break
        best_figure = figure
    note = (
        f"sensitivity fallback from {best.recipe.name} ({selection.severity(task, best.fidelity):.4f}): "
        f"{'; '.join(tried) or 'nothing to try'}; stopped: {stop}"
    )
    return Outcome(out, [note])


def rank(fp32: bytes, quantized: bytes, feed: Mapping[str, Array], limit: int, threads: int) -> list[str]:
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
        sess = measurement.session(passes.expose(model, names), threads=threads)
        sessions.append((sess, [o.name for o in sess.get_outputs()]))
    diff: dict[str, float] = {}
    scale: dict[str, float] = {}
    for i in range(min(count, limit)):
        sample = {k: v[i : i + 1] for k, v in feed.items()}
        try:
            ref = dict(zip(sessions[0][1], sessions[0][0].run(None, sample), strict=True))
            got = dict(zip(sessions[1][1], sessions[1][0].run(None, sample), strict=True))
        except Exception as exc:  # onnxruntime's own exception types
            raise errors.InvalidSpecError(
                f"inference failed while ranking sensitivity: {exc}", errors.Reason.INVALID_INPUT
            ) from exc
        for name in tensors:
            qn = q_name.get(name, name)
            if name in ref and qn in got and np.shape(ref[name]) == np.shape(got[qn]):
                r = np.asarray(ref[name], dtype=np.float64)
                diff[name] = diff.get(name, 0.0) + float(np.sum(np.abs(np.asarray(got[qn], np.float64) - r)))
                scale[name] = scale.get(name, 0.0) + float(np.sum(np.abs(r)))

    producer = {o: n for n in proto.graph.node for o in n.output}

    def err(name: str, depth: int = 0) -> float:
        # A tensor the quantizer folded away (e.g. the input of a removed Relu) inherits its producer's inputs.
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


__all__ = ["Outcome", "fallback", "rank"]
