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

Every figure but ``maxAbsError`` also gets a confidence interval over the evaluation samples (:func:`intervals`):
a two-sided 90 % interval, so its upper end is a one-sided 95 % bound. Shares (agreement, accuracies) use the Wilson
score interval; means of per-sample values (accuracy drop, relative error, flip rate) use Student's t. ``severity``
is the interval of the figure the gate compares with the budget (see
:func:`edgefleet.compiler.selection.severity`): with 64 samples and no disagreement at all, top-1 disagreement is
0 % with an upper bound of 4.1 %, so 64 samples cannot show that a variant keeps within a 1 % budget;
:func:`samples_needed` says how many would.

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


Z90 = 1.6448536269514722  # the two-sided 90 % normal quantile (one-sided 95 %)
# One-sided 95 % quantiles of Student's t for 1..30 degrees of freedom.
_T95 = (
    6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782, 1.771, 1.761, 1.753,
    1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703, 1.701, 1.699, 1.697,
)  # fmt: skip
Interval = tuple[float, float]


def t95(df: int) -> float:
    """One-sided 95 % quantile of Student's t with ``df`` degrees of freedom (pure; Cornish-Fisher above 30).

    >>> t95(7), round(t95(1000), 3)
    (1.895, 1.646)
    """
    if df < 1:
        return float("inf")
    if df <= len(_T95):
        return _T95[df - 1]
    return Z90 + (Z90**3 + Z90) / (4 * df)


def wilson(successes: float, n: int, z: float = Z90) -> Interval:
    """Wilson score interval of a share ``successes / n`` (pure).

    >>> [round(v, 4) for v in wilson(0, 64)]
    [0.0, 0.0406]
    >>> [round(v, 4) for v in wilson(1, 64)]
    [0.0035, 0.067]
    """
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, float(centre - half)), min(1.0, float(centre + half)))


def mean_interval(values: Array, scale: float = 1.0) -> Interval:
    """Interval of the mean of per-sample ``values`` divided by ``scale`` (pure; Student's t)."""
    v = np.asarray(values, dtype=np.float64) / max(scale, 1e-12)
    if v.size == 0 or not np.all(np.isfinite(v)):
        return (float("inf"), float("inf")) if v.size else (0.0, 0.0)
    mean = float(np.mean(v))
    if v.size == 1:
        return (mean, float("inf")) if mean >= 0 else (float("-inf"), mean)
    half = t95(v.size - 1) * float(np.std(v, ddof=1)) / np.sqrt(v.size)
    return (mean - half, mean + half)


def intervals(
    task: str,
    outputs: Sequence[Array],
    reference: Sequence[Array],
    labels: Array | None = None,
) -> dict[str, Interval]:
    """The 90 % interval of each figure :func:`measure` gives (but ``maxAbsError``), and of ``severity`` (pure).

    >>> ref = [np.array([[2.0, 1.0], [0.0, 3.0]])]
    >>> out = [np.array([[1.9, 1.2], [0.1, 2.8]])]
    >>> sorted(intervals("classification", out, ref, np.array([0, 0])))
    ['accuracy', 'accuracyDrop', 'referenceAccuracy', 'relativeError', 'severity', 'top1Agreement']
    """
    result: dict[str, Interval] = {}
    if len(outputs) != len(reference) or not outputs:
        return {"severity": (float("inf"), float("inf"))}
    worst: Interval = (0.0, 0.0)
    for o, r in zip(outputs, reference, strict=True):
        if o.shape != r.shape or not np.all(np.isfinite(o)) or not r.size:
            worst = (float("inf"), float("inf")) if r.size or o.shape != r.shape else worst
            continue
        per_sample = np.abs(o.astype(np.float64) - r.astype(np.float64)).reshape(len(r), -1).mean(axis=1)
        interval = mean_interval(per_sample, float(np.mean(np.abs(r.astype(np.float64)))))
        worst = (max(worst[0], interval[0]), max(worst[1], interval[1]))
    result["relativeError"] = worst
    severity = worst
    out, ref = np.asarray(outputs[0]), np.asarray(reference[0])
    comparable = out.shape == ref.shape and out.ndim >= 1 and bool(np.all(np.isfinite(out))) and ref.size > 0
    if task == "classification":
        if not comparable:
            return {**result, "top1Agreement": (0.0, 0.0), "severity": (1.0, 1.0)}
        pred, ref_pred = _top1(out), _top1(ref)
        n = int(pred.size)
        agree = int(np.sum(pred == ref_pred))
        low, high = wilson(n - agree, n)
        result["top1Agreement"] = (1.0 - high, 1.0 - low)
        severity = (low, high)
        if labels is not None and labels.shape[0] == pred.shape[0]:
            flat = labels.reshape(pred.shape)
            right, ref_right = pred == flat, ref_pred == flat
            result["accuracy"] = wilson(int(np.sum(right)), n)
            result["referenceAccuracy"] = wilson(int(np.sum(ref_right)), n)
            drop = mean_interval(ref_right.astype(np.float64) - right.astype(np.float64))
            result["accuracyDrop"] = (max(0.0, drop[0]), max(0.0, drop[1]))
            severity = (max(severity[0], result["accuracyDrop"][0]), max(severity[1], result["accuracyDrop"][1]))
    if task == "detection":
        if not comparable:
            return {**result, "flipRate": (1.0, 1.0), "severity": (float("inf"), float("inf"))}
        flips = ((out > 0.5) != (ref > 0.5)).reshape(len(ref), -1).mean(axis=1)
        result["flipRate"] = mean_interval(flips)
        span = float(np.max(ref) - np.min(ref))
        mae = np.abs(out.astype(np.float64) - ref.astype(np.float64)).reshape(len(ref), -1).mean(axis=1)
        scaled = mean_interval(mae, max(span, 1e-6))
        severity = (max(result["flipRate"][0], scaled[0]), max(result["flipRate"][1], scaled[1]))
        result["relativeError"] = severity
    result["severity"] = severity
    return result


def samples_needed(task: str, measured: float, interval: Interval, n: int, budget: float) -> int | None:
    """How many evaluation samples would put the upper bound of ``measured`` within ``budget`` (pure).

    Assumes the figure and its spread stay as measured; ``None`` when no sample count would (the figure is at or
    above the budget).

    >>> samples_needed("classification", 0.0, wilson(0, 64), 64, 0.01)
    268
    """
    if not measured < budget:
        return None
    if task == "classification":
        low, high = n, n
        while wilson(measured * high, high)[1] > budget:
            low, high = high, high * 2
            if high > 10**9:
                return None
        while low < high:
            mid = (low + high) // 2
            if wilson(measured * mid, mid)[1] > budget:
                low = mid + 1
            else:
                high = mid
        return int(high)
    spread = (interval[1] - measured) * np.sqrt(n) / t95(max(n - 1, 1))
    if not np.isfinite(spread):
        return None
    return max(n, int(np.ceil((Z90 * spread / (budget - measured)) ** 2)))


def _top1(scores: Array) -> Array:
    if scores.ndim == 1:  # a single logit per sample: positive means class 1
        return np.asarray(scores > 0, dtype=np.int64)
    return np.asarray(scores.argmax(axis=-1), dtype=np.int64)


def rounded_intervals(intervals: Mapping[str, Interval], digits: int = 4) -> dict[str, list[float | None]]:
    """Intervals rounded like :func:`rounded`, for the manifest and reports (pure)."""
    return {
        k: [rounded({"v": v[0]}, digits)["v"], rounded({"v": v[1]}, digits)["v"]] for k, v in sorted(intervals.items())
    }


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
