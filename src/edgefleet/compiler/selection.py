"""Choosing a compiled variant: the accuracy gate, the latency comparison and the selection rule. Pure.

Everything here is a function of already-measured numbers: no ONNX, no onnxruntime, no clock. The compiler's
adapter modules build and measure candidates; this module decides what to build (:func:`plan_candidates`, one
:class:`Recipe` per variant) and which variant ships (:func:`choose`).

The rule, in order:

1. **Gate** (:func:`gate`). A candidate that failed to build or load is never eligible. Classification: the larger
   of (1 - top-1 agreement) and the labelled-accuracy drop must not exceed ``max_accuracy_drop``; every other task:
   the worst per-output relative error must not exceed ``max_relative_error``. The gate knows its sample size: a
   lossy candidate passes only when the upper end of the figure's 90 % confidence interval
   (:func:`edgefleet.compiler.fidelity.intervals`) is within the budget as well. When the measured figure is within
   the budget but its upper bound is not, the evaluation set is too small to decide: the verdict says so and how
   many samples would be needed, and the candidate is not eligible (fail closed). Optimised FP32 (the reference with
   Conv+BatchNorm folded) is judged on its measured figure alone.
2. **Precision.** An explicit precision keeps only candidates of that precision; none eligible is a failure with a
   report of the numbers.
3. **Objective.** ``optimize_for="size"``: the smallest eligible candidate. ``"latency"`` (the default): latency
   first, then size. Speeds are compared as the median of per-round latency ratios: timing rounds are interleaved,
   so round ``i`` of two candidates ran under the same machine load (:func:`speed_ratio`, with a distribution-free
   confidence interval of that median from the rounds' order statistics). With ``precision="auto"`` a candidate is
   only eligible when it is *not slower than FP32* beyond the tolerance with confidence: the upper end of its
   ratio's interval against FP32 is at most ``1 + tolerance``. The *fastest group* is every eligible candidate whose
   median ratio against the fastest one is at most ``1 + tolerance`` (5 % by default): within it speed differences
   are indistinguishable, and the smallest artifact wins (then the lower gate figure, then the name).
4. **Hardware.** Latencies come from the target's hardware class: the compile host's timings when the host
   represents it, else numbers that devices of the class measured and reported. Until such numbers exist
   (``measured_on_target=False``) ``auto`` ships optimised FP32: no variant is assumed faster than FP32.

Worked example (``tolerance=0.05``): FP32 1.00 ms / 1.6 MB, FP16 1.01 ms / 0.8 MB, INT8 0.62 ms / 0.42 MB, all in
budget. INT8's ratio against FP32 is 0.62 (interval 0.60-0.65), so it is the fastest, and FP16 (1.01 / 0.62 = 1.63
times INT8) and FP32 are outside its group: INT8 wins, "smallest variant in budget within 5 % of the fastest". Had
INT8 failed the gate, FP16 (ratio 1.01, interval 0.98-1.03 <= 1.05) and FP32 would form the group and FP16, half the
bytes at the same speed, would ship.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Literal

from edgefleet.compiler import fidelity as figures

Precision = Literal["fp32", "fp16", "int8"]
Objective = Literal["latency", "size"]
GateState = Literal["pass", "fail", "undecided"]

# Instruction-set features that change how fast INT8 kernels are relative to FP32 (dot-product instructions).
INT8_DOT_FEATURES = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})
# Features that give native FP16 arithmetic (without them onnxruntime's CPU kernels cast back to FP32).
FP16_FEATURES = frozenset({"avx512_fp16", "fphp", "asimdhp"})
DEFAULT_TOLERANCE = 0.05
Interval = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class Budget:
    """The accuracy gate's limits (mirrors ``api.modeldeployment.AccuracyBudget``)."""

    max_accuracy_drop: float
    max_relative_error: float

    def limit(self, task: str) -> float:
        """The limit that applies to ``task``."""
        return self.max_accuracy_drop if task == "classification" else self.max_relative_error


@dataclasses.dataclass(frozen=True)
class Latency:
    """Batch-1 latency of one candidate, in ms: p50/p95 over all runs and one figure per timing round (the 20th
    percentile of the round's runs).

    Rounds are interleaved across candidates, so round ``i`` of two candidates ran under the same machine load.
    """

    p50: float
    p95: float
    rounds: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One built and measured variant. ``error`` is set when it could not be built, loaded or run.

    ``intervals`` are the 90 % confidence intervals of the fidelity figures over ``samples`` evaluation samples;
    ``lossy`` is False for optimised FP32, which the gate judges on its measured figure alone.
    """

    name: str
    precision: Precision
    size_bytes: int
    compressed_bytes: int
    fidelity: Mapping[str, float]
    latency: Latency | None
    error: str | None = None
    options: Mapping[str, object] = dataclasses.field(default_factory=dict)
    compile_seconds: float = 0.0
    intervals: Mapping[str, Interval] = dataclasses.field(default_factory=dict)
    samples: int = 0
    lossy: bool = True


@dataclasses.dataclass(frozen=True)
class GateVerdict:
    """Gate outcome for one candidate: passed, the reason in words, and whether the sample size decided it.

    ``state`` is ``undecided`` when the measured figure is within the budget but the evaluation set is too small to
    show it (then ``needed`` is the sample count that would, when one would).
    """

    passed: bool
    reason: str
    state: GateState = "pass"
    needed: int | None = None


@dataclasses.dataclass(frozen=True)
class Choice:
    """The selected candidate (``None`` when nothing is eligible), why, and every candidate's verdict.

    ``reason`` depends only on the rule that decided (it goes into the signed manifest, which must not change
    between equal runs); ``detail`` adds the measured numbers for people.
    """

    selected: Candidate | None
    reason: str
    verdicts: Mapping[str, GateVerdict]
    detail: str = ""


def gate(
    task: str,
    fidelity: Mapping[str, float],
    budget: Budget,
    intervals: Mapping[str, Interval] | None = None,
    samples: int = 0,
    lossy: bool = True,
) -> GateVerdict:
    """Judge fidelity numbers against the budget (pure); see rule 1 of the module docstring.

    ``fidelity`` keys: ``top1Agreement`` and optional ``accuracyDrop`` for classification, ``relativeError`` (worst
    output) otherwise; ``intervals["severity"]`` is the confidence interval of the judged figure.

    >>> gate("classification", {"top1Agreement": 0.995, "accuracyDrop": 0.002}, Budget(0.01, 0.01)).passed
    True
    >>> gate("regression", {"relativeError": 0.02}, Budget(0.01, 0.01)).reason
    'relative error 0.0200 > budget 0.0100'
    >>> v = gate("classification", {"top1Agreement": 1.0}, Budget(0.01, 0.01), {"severity": (0.0, 0.0406)}, 64)
    >>> v.state, v.needed
    ('undecided', 268)
    >>> v.reason.split(";")[1]
    ' 268 needed'
    """
    what = "accuracy drop" if task == "classification" else "relative error"
    if task == "classification" and "top1Agreement" not in fidelity:
        return GateVerdict(False, "no top-1 agreement measured", "fail")
    if task != "classification" and "relativeError" not in fidelity:
        return GateVerdict(False, "no relative error measured", "fail")
    value = severity(task, fidelity)
    limit = budget.limit(task)
    interval = (intervals or {}).get("severity") if lossy else None
    if interval is None or not math.isfinite(value):
        if not value <= limit + 1e-12:  # also rejects NaN
            return GateVerdict(False, f"{what} {value:.4f} > budget {limit:.4f}", "fail")
        return GateVerdict(True, f"{what} {value:.4f} <= budget {limit:.4f}")
    low, high = interval
    band = f"{what} {value:.4f} (90% CI {low:.4f}-{high:.4f})"
    if high <= limit + 1e-12:
        return GateVerdict(True, f"{band} <= budget {limit:.4f}")
    if low > limit + 1e-12 or not math.isfinite(low):
        return GateVerdict(False, f"{band} > budget {limit:.4f}", "fail")
    if value <= limit + 1e-12:
        needed = figures.samples_needed(task, value, interval, samples, limit)
        more = f"{needed} needed" if needed is not None else "no sample count would"
        return GateVerdict(
            False,
            f"undecided: {band} with {samples} evaluation samples cannot show <= {limit:.4f}; {more}",
            "undecided",
            needed,
        )
    return GateVerdict(
        False,
        f"undecided: {band} is over the budget {limit:.4f} as measured, but {samples} evaluation samples cannot "
        "show that it is; failed closed",
        "undecided",
    )


def severity(task: str, fidelity: Mapping[str, float]) -> float:
    """The number the gate compares with the budget: accuracy drop or relative error (pure).

    >>> round(severity("classification", {"top1Agreement": 0.98, "accuracyDrop": 0.01}), 6)
    0.02
    """
    if task == "classification":
        return max(1.0 - fidelity.get("top1Agreement", 0.0), fidelity.get("accuracyDrop", 0.0))
    return fidelity.get("relativeError", float("inf"))


def verdict_of(task: str, candidate: Candidate, budget: Budget) -> GateVerdict:
    """The gate's verdict on ``candidate``, including build failures and missing latency (pure)."""
    if candidate.error is not None:
        return GateVerdict(False, f"failed: {candidate.error}", "fail")
    verdict = gate(task, candidate.fidelity, budget, candidate.intervals, candidate.samples, candidate.lossy)
    if verdict.passed and candidate.latency is None:
        return GateVerdict(False, "latency not measured", "fail")
    return verdict


def _median_bounds(n: int) -> tuple[int, int]:
    """0-based order statistics bounding the median of ``n`` values with at least 90 % confidence."""
    k = 0
    cumulative = 0.0
    while k < n:
        cumulative += math.comb(n, k) / 2**n
        if cumulative > 0.05:
            break
        k += 1
    k = max(k - 1, 0) if k > 0 else 0
    return (k, n - 1 - k)


def speed_ratio(candidate: Latency, base: Latency) -> tuple[float, Interval]:
    """Latency of ``candidate`` relative to ``base``: median of the per-round ratios and its interval (pure).

    The interval is distribution-free (order statistics of the ratios: with 7 rounds, their minimum and maximum,
    98 % confidence). Without rounds the p50 ratio stands, with no spread.

    >>> speed_ratio(Latency(0.5, 0.6, (0.5, 0.52, 0.49)), Latency(1.0, 1.1, (1.0, 1.0, 0.98)))
    (0.5, (0.5, 0.52))
    """
    pairs = [c / b for c, b in zip(candidate.rounds, base.rounds, strict=False) if b > 0]
    if not pairs:
        ratio = candidate.p50 / base.p50 if base.p50 > 0 else float("inf")
        return ratio, (ratio, ratio)
    pairs.sort()
    n = len(pairs)
    median = pairs[n // 2] if n % 2 else (pairs[n // 2 - 1] + pairs[n // 2]) / 2
    low, high = _median_bounds(n)
    return median, (pairs[low], pairs[high])


def choose(
    task: str,
    candidates: Sequence[Candidate],
    budget: Budget,
    precision: Literal["auto", "fp32", "fp16", "int8"] = "auto",
    optimize_for: Objective = "latency",
    tolerance: float = DEFAULT_TOLERANCE,
    measured_on_target: bool = True,
) -> Choice:
    """Select the variant to ship (pure); see the module docstring for the rule and a worked example.

    ``candidates`` must include the FP32 reference named ``fp32``; latencies are those of the target's class.
    """
    verdicts = {c.name: verdict_of(task, c, budget) for c in candidates}
    fp32 = next((c for c in candidates if c.name == "fp32" and verdicts[c.name].passed), None)
    eligible = [c for c in candidates if verdicts[c.name].passed]
    if precision != "auto":
        eligible = [c for c in eligible if c.precision == precision]
    if not eligible:
        what = "candidate" if precision == "auto" else f"{precision} candidate"
        return Choice(None, f"no {what} meets the accuracy budget", verdicts, _failures(candidates, verdicts))

    def lat(c: Candidate) -> Latency:
        assert c.latency is not None  # eligible candidates are measured
        return c.latency

    if optimize_for == "size":
        best = min(eligible, key=lambda c: (c.size_bytes, lat(c).p50, c.name))
        return Choice(best, "smallest variant in budget (optimizeFor: size)", verdicts, _describe(best, fp32))
    if not measured_on_target:
        if precision == "auto" and fp32 is not None:
            reason = "not measured on this hardware class yet: no variant is assumed faster than FP32"
            return Choice(fp32, reason, verdicts, f"{fp32.size_bytes} bytes")
        best = min(eligible, key=lambda c: (c.size_bytes, severity(task, c.fidelity), c.name))
        reason = f"not measured on this hardware class yet: the smallest {precision} variant in budget"
        return Choice(best, reason, verdicts, f"{best.size_bytes} bytes")
    if precision == "auto" and fp32 is not None:
        eligible = [c for c in eligible if c is fp32 or speed_ratio(lat(c), lat(fp32))[1][1] <= 1.0 + tolerance]
    reference = fp32.latency if fp32 is not None and fp32.latency is not None else lat(eligible[0])
    fastest = min(eligible, key=lambda c: (speed_ratio(lat(c), reference)[0], c.name))
    group = [c for c in eligible if c is fastest or speed_ratio(lat(c), lat(fastest))[0] <= 1.0 + tolerance]
    # Inside the group speed differences are noise, so ties are broken by size, then fidelity, then name:
    # never by latency, or equal runs could ship different bytes.
    best = min(group, key=lambda c: (c.size_bytes, severity(task, c.fidelity), c.name))
    percent = f"{100 * tolerance:g} %"
    if best is fp32:
        reason = f"no smaller variant in budget is as fast as optimised FP32 (within {percent})"
    else:
        reason = f"smallest variant in budget within {percent} of the fastest"
    return Choice(best, reason, verdicts, _describe(best, fp32))


def pool(
    per_device: Sequence[Mapping[str, tuple[float, float, Sequence[float]]]], reference: str = "fp32"
) -> dict[str, Latency]:
    """Timings several devices reported, as latencies relative to ``reference`` on the same device and round (pure).

    Each device's rounds are divided by its own reference's rounds (a round ran every candidate under the same
    load), and the devices' ratios are pooled, so :func:`speed_ratio` against the reference becomes the median ratio
    over every device's rounds. Only variants every device timed are kept.

    >>> pooled = pool([{"fp32": (2.0, 2.2, (2.0, 2.0)), "int8": (1.0, 1.1, (1.0, 1.2))},
    ...                {"fp32": (4.0, 4.4, (4.0, 4.0)), "int8": (4.4, 4.6, (4.4, 4.4))}])
    >>> round(speed_ratio(pooled["int8"], pooled["fp32"])[0], 2)
    0.85
    """
    usable = [d for d in per_device if reference in d]
    if not usable:
        return {}
    variants = set.intersection(*(set(d) for d in usable))
    out: dict[str, Latency] = {}
    for variant in sorted(variants):
        rounds: list[float] = []
        p50s: list[float] = []
        p95s: list[float] = []
        for device in usable:
            p50, p95, own = device[variant]
            ref_p50, ref_p95, ref_rounds = device[reference]
            rounds += [a / b for a, b in zip(own, ref_rounds, strict=False) if b > 0]
            p50s.append(p50 / ref_p50 if ref_p50 > 0 else math.inf)
            p95s.append(p95 / ref_p95 if ref_p95 > 0 else math.inf)
        out[variant] = Latency(sorted(p50s)[len(p50s) // 2], max(p95s), tuple(rounds))
    return out


def _failures(candidates: Sequence[Candidate], verdicts: Mapping[str, GateVerdict]) -> str:
    return "; ".join(f"{c.name}: {verdicts[c.name].reason}" for c in candidates)


def _describe(c: Candidate, fp32: Candidate | None) -> str:
    if fp32 is None or fp32.latency is None or c.latency is None:
        return f"{c.latency.p50 if c.latency else float('nan'):.3f} ms, {c.size_bytes} bytes"
    ratio, (low, high) = speed_ratio(c.latency, fp32.latency)
    size = fp32.size_bytes / c.size_bytes if c.size_bytes else float("inf")
    speed = f"{1 / ratio:.2f}x" if ratio > 0 else "-"
    return (
        f"{c.latency.p50:.3f} ms vs FP32 {fp32.latency.p50:.3f} ms, {speed} (latency ratio {ratio:.3f}, "
        f"interval {low:.3f}-{high:.3f}); {size:.2f}x smaller than FP32"
    )


def report_rows(
    candidates: Sequence[Candidate], choice: Choice, bundle_bytes: Mapping[str, int] | None = None
) -> list[dict[str, str]]:
    """One row of display strings per candidate, selected first marked, in candidate order (pure).

    ``bundle_bytes`` is each candidate's bundle size as it would be published (model, manifest, golden samples).
    """
    fp32 = next((c for c in candidates if c.name == "fp32"), None)
    rows = []
    for c in candidates:
        verdict = choice.verdicts.get(c.name, GateVerdict(False, "not judged"))
        size_ratio = f"{fp32.size_bytes / c.size_bytes:.2f}x" if fp32 and c.size_bytes else "-"
        speed = interval = p50 = p95 = "-"
        if c.latency is not None:
            p50, p95 = f"{c.latency.p50:.3f}", f"{c.latency.p95:.3f}"
            if fp32 is not None and fp32.latency is not None:
                ratio, (low, high) = speed_ratio(c.latency, fp32.latency)
                speed = f"{1 / ratio:.2f}x" if ratio > 0 else "-"
                interval = f"{1 / high:.2f}-{1 / low:.2f}x" if low > 0 else "-"
        rows.append(
            {
                "variant": ("* " if choice.selected is c else "  ") + c.name,
                "precision": c.precision,
                "model_bytes": str(c.size_bytes),
                "bundle_bytes": str((bundle_bytes or {}).get(c.name, "-")),
                "ratio": size_ratio,
                "p50_ms": p50,
                "p95_ms": p95,
                "speedup": speed,
                "speedup_90ci": interval,
                "fidelity": format_fidelity(c.fidelity, c.intervals),
                "verdict": verdict.reason,
            }
        )
    return rows


def format_fidelity(fidelity: Mapping[str, float], intervals: Mapping[str, Interval] | None = None) -> str:
    """Short human form of fidelity numbers, with their 90 % intervals when given (pure).

    >>> format_fidelity({"top1Agreement": 0.99833, "accuracyDrop": 0.0})
    'agree 99.83% dAcc 0.00pt'
    >>> format_fidelity({"relativeError": 0.0042}, {"relativeError": (0.0031, 0.0053)})
    'relErr 4.20e-03 (3.10e-03-5.30e-03)'
    """
    ci = intervals or {}
    parts = []
    if "top1Agreement" in fidelity:
        low, high = ci.get("top1Agreement", (math.nan, math.nan))
        band = f" ({100 * low:.2f}-{100 * high:.2f})" if "top1Agreement" in ci else ""
        parts.append(f"agree {100 * fidelity['top1Agreement']:.2f}%{band}")
    if "accuracyDrop" in fidelity:
        low, high = ci.get("accuracyDrop", (math.nan, math.nan))
        band = f" ({100 * low:.2f}-{100 * high:.2f})" if "accuracyDrop" in ci else ""
        parts.append(f"dAcc {100 * fidelity['accuracyDrop']:.2f}pt{band}")
    if "relativeError" in fidelity:
        low, high = ci.get("relativeError", (math.nan, math.nan))
        band = f" ({low:.2e}-{high:.2e})" if "relativeError" in ci else ""
        parts.append(f"relErr {fidelity['relativeError']:.2e}{band}")
    return " ".join(parts) or "-"


def format_report(rows: Sequence[Mapping[str, str]]) -> str:
    """Fixed-width text table of :func:`report_rows` output, for error messages and logs (pure)."""
    if not rows:
        return "(no candidates)"
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(widths[k]) for k in keys)]
    lines += ["  ".join(r[k].ljust(widths[k]) for k in keys) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One variant to build: its name, precision, how (``kind``) and the pass options."""

    name: str
    precision: Precision
    kind: Literal["fp32", "fp16", "dynamic", "static"]
    options: Mapping[str, object] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class QuantizationChoices:
    """The INT8 search space as the spec leaves it (``None``/``"auto"`` = let the compiler search)."""

    method: str = "auto"
    format: str = "auto"
    per_channel: bool | None = None
    calibration_method: str = "auto"
    reduce_range: bool | None = None
    exclude_nodes: tuple[str, ...] = ()


def plan_candidates(
    precision: Literal["auto", "fp32", "fp16", "int8"],
    quantization: QuantizationChoices,
    has_calibration: bool,
) -> list[Recipe]:
    """The variants worth building for a target (pure). FP32 is always built: it is the reference.

    With everything on ``auto`` INT8 tries weight-only dynamic quantization, calibrated QDQ S8S8 with per-channel
    weights and three calibration methods, and calibrated QOperator U8S8 (the x86 kernels' native layout).
    Static variants need a calibration set; without one only dynamic INT8 is planned.

    >>> [p.name for p in plan_candidates("int8", QuantizationChoices(method="static", format="QDQ",
    ...     calibration_method="MinMax"), has_calibration=True)]
    ['fp32', 'int8-qdq-s8s8-perchannel-minmax']
    """
    q = quantization
    plans = [Recipe("fp32", "fp32", "fp32")]
    if precision in ("auto", "fp16"):
        plans.append(Recipe("fp16", "fp16", "fp16"))
    if precision not in ("auto", "int8"):
        return plans
    common: dict[str, object] = {"exclude_nodes": tuple(q.exclude_nodes)}
    if q.method in ("auto", "dynamic"):
        per_channel = bool(q.per_channel)
        reduce_range = bool(q.reduce_range)
        name = "int8-dynamic" + ("-perchannel" if per_channel else "") + ("-7bit" if reduce_range else "")
        plans.append(
            Recipe(name, "int8", "dynamic", {**common, "per_channel": per_channel, "reduce_range": reduce_range})
        )
    if q.method in ("auto", "static") and has_calibration:
        per_channel = True if q.per_channel is None else q.per_channel
        formats = ["QDQ", "QOperator"] if q.format == "auto" else [q.format]
        for fmt in formats:
            if q.calibration_method != "auto":
                methods = [q.calibration_method]
            else:
                methods = ["MinMax", "Percentile", "Entropy"] if fmt == "QDQ" else ["MinMax"]
            act = "s8" if fmt == "QDQ" else "u8"
            for method in methods:
                name = "-".join(
                    [
                        "int8",
                        "qdq" if fmt == "QDQ" else "qop",
                        f"{act}s8",
                        "perchannel" if per_channel else "pertensor",
                        method.lower(),
                    ]
                ) + ("-7bit" if q.reduce_range else "")
                plans.append(
                    Recipe(
                        name,
                        "int8",
                        "static",
                        {
                            **common,
                            "quant_format": fmt,
                            "per_channel": per_channel,
                            "method": method,
                            "activation_type": act,
                            "weight_type": "s8",
                            "reduce_range": bool(q.reduce_range),
                        },
                    )
                )
    return plans


def exclusion_steps(ranked_nodes: Sequence[str]) -> list[tuple[str, ...]]:
    """Sensitivity-guided fallback: keep the 1, 2, 4, ... most sensitive nodes in float (pure).

    ``ranked_nodes`` is most sensitive first. At least one node stays quantized (keeping all of them in float is
    just FP32 under another name).

    >>> exclusion_steps(["a", "b", "c", "d", "e"])
    [('a',), ('a', 'b'), ('a', 'b', 'c', 'd')]
    """
    steps: list[tuple[str, ...]] = []
    k = 1
    while k < len(ranked_nodes):
        steps.append(tuple(ranked_nodes[:k]))
        k *= 2
    return steps
