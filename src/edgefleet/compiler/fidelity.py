"""Fidelity of a compiled variant against the FP32 source: the numbers the accuracy gate judges. Pure.

Inputs are the two models' outputs on the same evaluation set (one array per output, batch first) and optional
labels. What is measured depends on the task:

``classification``
    ``top1Agreement``: share of samples whose arg-max over the first output's last axis equals FP32's.
    With labels also ``accuracy``, ``referenceAccuracy`` and ``accuracyDrop`` (reference minus variant, in [0, 1]).
every task
    ``relativeError``: worst output's normalised mean absolute error ``mean|y - ref| / mean|ref|``; and
    ``maxAbsError``. Non-finite outputs make both infinite.
``detection``
    the first output is a score map: ``flipRate`` is the share of elements that change side of 0.5 (the usual
    threshold) and ``relativeError`` is the larger of ``flipRate`` and ``mean|y - ref| / (max(ref) - min(ref))``
    (background near 0 would make a mean-magnitude denominator explode).

Worked example: reference logits ``[[2, 1], [0, 3]]``, variant ``[[1.9, 1.2], [0.1, 2.8]]`` and labels ``[0, 0]``:
both arg-maxes agree (``top1Agreement`` 1.0), both models score 1 of 2 (``accuracyDrop`` 0.0), mean absolute
error 0.15 over a mean magnitude 1.5 gives ``relativeError`` 0.1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]


def relative_error(actual: Array, reference: Array) -> float:
    """``mean|actual - reference| / mean|reference|`` (pure); infinite when ``actual`` is not finite.

    >>> round(relative_error(np.array([1.1, 1.9]), np.array([1.0, 2.0])), 4)
    0.0667
    """
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if a.shape != r.shape:
        return float("inf")
    if not np.all(np.isfinite(a)):
        return float("inf")
    scale = float(np.mean(np.abs(r))) if r.size else 0.0
    err = float(np.mean(np.abs(a - r))) if r.size else 0.0
    return err / max(scale, 1e-12) if err > 0 else 0.0


def measure(
    task: str,
    outputs: Sequence[Array],
    reference: Sequence[Array],
    labels: Array | None = None,
) -> dict[str, float]:
    """Fidelity numbers of ``outputs`` against ``reference`` for ``task`` (pure); see the module docstring.

    >>> ref = [np.array([[2.0, 1.0], [0.0, 3.0]])]
    >>> out = [np.array([[1.9, 1.2], [0.1, 2.8]])]
    >>> m = measure("classification", out, ref, np.array([0, 0]))
    >>> (m["top1Agreement"], m["accuracyDrop"], round(m["relativeError"], 3))
    (1.0, 0.0, 0.1)
    """
    result: dict[str, float] = {}
    if len(outputs) != len(reference):
        return {"relativeError": float("inf"), "maxAbsError": float("inf"), "top1Agreement": 0.0}
    rel = [relative_error(o, r) for o, r in zip(outputs, reference, strict=True)]
    result["relativeError"] = max(rel) if rel else 0.0
    max_abs = 0.0
    for o, r in zip(outputs, reference, strict=True):
        if o.shape != r.shape or not np.all(np.isfinite(o)):
            max_abs = float("inf")
            break
        if r.size:
            max_abs = max(max_abs, float(np.max(np.abs(o.astype(np.float64) - r.astype(np.float64)))))
    result["maxAbsError"] = max_abs
    if task == "classification" and outputs:
        out, ref = np.asarray(outputs[0]), np.asarray(reference[0])
        if out.shape == ref.shape and out.ndim >= 1 and np.all(np.isfinite(out)):
            pred, ref_pred = _top1(out), _top1(ref)
            result["top1Agreement"] = float(np.mean(pred == ref_pred)) if pred.size else 1.0
            if labels is not None and labels.shape[0] == pred.shape[0]:
                flat_labels = labels.reshape(pred.shape)
                acc = float(np.mean(pred == flat_labels))
                ref_acc = float(np.mean(ref_pred == flat_labels))
                result["accuracy"] = acc
                result["referenceAccuracy"] = ref_acc
                result["accuracyDrop"] = max(0.0, ref_acc - acc)
        else:
            result["top1Agreement"] = 0.0
    if task == "detection" and outputs:
        out, ref = np.asarray(outputs[0]), np.asarray(reference[0])
        if out.shape == ref.shape and np.all(np.isfinite(out)) and ref.size:
            flips = float(np.mean((out > 0.5) != (ref > 0.5)))
            span = float(np.max(ref) - np.min(ref))
            mae = float(np.mean(np.abs(out.astype(np.float64) - ref.astype(np.float64))))
            result["flipRate"] = flips
            # Score maps are mostly background near 0, where a mean-magnitude denominator explodes; the error
            # is relative to the map's range instead, and a decision flip counts at least as much.
            result["relativeError"] = max(flips, mae / max(span, 1e-6))
        else:
            result["flipRate"] = 1.0
            result["relativeError"] = float("inf")
    return result


def _top1(scores: Array) -> Array:
    if scores.ndim == 1:  # a single logit per sample: positive means class 1
        return np.asarray(scores > 0, dtype=np.int64)
    return np.asarray(scores.argmax(axis=-1), dtype=np.int64)


def rounded(fidelity: Mapping[str, float], digits: int = 6) -> dict[str, float | None]:
    """Fidelity rounded to ``digits`` significant digits, non-finite values as ``None`` (pure).

    The manifest is canonical JSON without NaN/Infinity, and rounding keeps it stable across equal runs.

    >>> rounded({"relativeError": 0.000123456789, "maxAbsError": float("inf")})
    {'maxAbsError': None, 'relativeError': 0.000123457}
    """
    out: dict[str, float | None] = {}
    for key in sorted(fidelity):
        value = float(fidelity[key])
        out[key] = float(f"{value:.{digits}g}") if np.isfinite(value) else None
    return out
