"""Choosing a compiled variant: the accuracy gate, the latency cost model and the selection rule. Pure.

Everything here is a function of already-measured numbers: no ONNX, no onnxruntime, no clock. The compiler's
adapter modules build and measure candidates; this module decides what to build (:func:`plan_candidates`, one
:class:`Recipe` per variant) and which variant ships (:func:`choose`).

The rule, in order:

1. **Gate.** A candidate whose fidelity against FP32 breaks the budget, or that failed to build or load, is never
   eligible. Classification: the larger of (1 - top-1 agreement) and the labelled-accuracy drop must not exceed
   ``max_accuracy_drop``. Every other task: the worst per-output relative error must not exceed
   ``max_relative_error``.
2. **Precision.** An explicit precision keeps only candidates of that precision; none eligible is a failure with a
   report of the numbers.
3. **Objective.** ``optimize_for="size"``: the smallest eligible candidate. ``"latency"`` (the default): the
   *fastest group* is every eligible candidate whose median latency is within ``tolerance`` of the fastest; the
   smallest of that group wins. With ``precision="auto"`` a non-FP32 candidate is only eligible when it is
   *confidently* not slower than FP32 (:func:`confidently_not_slower`: median not above FP32's and at least as
   fast in 3 of 4 paired timing rounds). When in doubt, optimised FP32 wins.

Worked example (``tolerance=0.05``): FP32 1.00 ms / 1.6 MB, FP16 1.01 ms / 0.8 MB, INT8 0.62 ms / 0.42 MB, all in
budget, INT8 faster than FP32 in all 7 paired rounds. The fastest group is {INT8} (FP16 and FP32 are more than 5 %
slower than 0.62 ms), so INT8 wins: "smallest of the fastest variants in budget" (detail: "0.620 ms vs FP32
1.000 ms, 1.61x; 3.81x smaller than FP32"). Had INT8 measured 0.99 ms and been faster in only 4 of 7 rounds, it
would not be confidently faster than FP32 and FP32 would win.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

Precision = Literal["fp32", "fp16", "int8"]
Objective = Literal["latency", "size"]

# Instruction-set features that change how fast INT8 kernels are relative to FP32 (dot-product instructions).
INT8_DOT_FEATURES = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})
# Features that give native FP16 arithmetic (without them onnxruntime's CPU kernels cast back to FP32).
FP16_FEATURES = frozenset({"avx512_fp16", "fphp", "asimdhp"})
# Cost model: minimum latency, relative to FP32, assumed for a precision whose features the target lacks.
SLOWDOWN_WITHOUT_FEATURES = {"int8": 1.5, "fp16": 1.1, "fp32": 1.0}


@dataclasses.dataclass(frozen=True)
class Budget:
    """The accuracy gate's limits (mirrors ``api.modeldeployment.AccuracyBudget``)."""

    max_accuracy_drop: float
    max_relative_error: float


@dataclasses.dataclass(frozen=True)
class Latency:
    """Batch-1 latency of one candidate, in ms: p50/p95 over all runs and the median of each timing round.

    Rounds are interleaved across candidates, so round ``i`` of two candidates ran under the same machine load.
    """

    p50: float
    p95: float
    rounds: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One built and measured variant. ``error`` is set when it could not be built, loaded or run."""

    name: str
    precision: Precision
    size_bytes: int
    compressed_bytes: int
    fidelity: Mapping[str, float]
    latency: Latency | None
    error: str | None = None
    options: Mapping[str, object] = dataclasses.field(default_factory=dict)
    compile_seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class GateVerdict:
    """Gate outcome for one candidate: passed, and the reason in words."""

    passed: bool
    reason: str


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


def gate(task: str, fidelity: Mapping[str, float], budget: Budget) -> GateVerdict:
    """Judge fidelity numbers against the budget (pure).

    ``fidelity`` keys: ``top1Agreement`` and optional ``accuracyDrop`` for classification, ``relativeError`` (worst
    output) otherwise.

    >>> gate("classification", {"top1Agreement": 0.995, "accuracyDrop": 0.002}, Budget(0.01, 0.01)).passed
    True
    >>> gate("regression", {"relativeError": 0.02}, Budget(0.01, 0.01)).reason
    'relative error 0.0200 > budget 0.0100'
    """
    if task == "classification":
        if "top1Agreement" not in fidelity:
            return GateVerdict(False, "no top-1 agreement measured")
        drop = severity(task, fidelity)
        if drop > budget.max_accuracy_drop + 1e-12:
            return GateVerdict(False, f"accuracy drop {drop:.4f} > budget {budget.max_accuracy_drop:.4f}")
        return GateVerdict(True, f"accuracy drop {drop:.4f} <= budget {budget.max_accuracy_drop:.4f}")
    if "relativeError" not in fidelity:
        return GateVerdict(False, "no relative error measured")
    err = fidelity["relativeError"]
    if not err <= budget.max_relative_error + 1e-12:  # also rejects NaN
        return GateVerdict(False, f"relative error {err:.4f} > budget {budget.max_relative_error:.4f}")
    return GateVerdict(True, f"relative error {err:.4f} <= budget {budget.max_relative_error:.4f}")


def severity(task: str, fidelity: Mapping[str, float]) -> float:
    """The number the gate compares with the budget: accuracy drop or relative error (pure).

    >>> round(severity("classification", {"top1Agreement": 0.98, "accuracyDrop": 0.01}), 6)
    0.02
    """
    if task == "classification":
        return max(1.0 - fidelity.get("top1Agreement", 0.0), fidelity.get("accuracyDrop", 0.0))
    return fidelity.get("relativeError", float("inf"))


def project_latency(
    candidate: Candidate, fp32: Latency, host_features: frozenset[str], target_features: frozenset[str]
) -> Latency | None:
    """Latency expected on the target hardware class from a host measurement: the cost model (pure).

    When the host and target agree on the features that matter for a precision, the host measurement stands.
    When the host has INT8 dot-product instructions the target lacks (``INT8_DOT_FEATURES``), INT8 is assumed to
    take at least ``1.5x`` FP32's latency on the target (the low end of what onnxruntime's INT8 kernels gave on
    AVX2 hosts without VNNI across four pretrained vision models); when the host has native FP16 arithmetic the
    target lacks (``FP16_FEATURES``), FP16 is assumed to take at least ``1.1x`` FP32's (onnxruntime then casts
    around float kernels). The projection never over-promises a speed-up; a device-reported benchmark, when
    supplied, replaces it.

    >>> c = Candidate("int8", "int8", 1, 1, {}, Latency(0.5, 0.6, (0.5,)))
    >>> project_latency(c, Latency(1.0, 1.2, (1.0,)), frozenset({"avx512_vnni"}), frozenset({"avx2"})).p50
    1.5
    """
    lat = candidate.latency
    if lat is None:
        return None
    relevant = {"int8": INT8_DOT_FEATURES, "fp16": FP16_FEATURES}.get(candidate.precision)
    if relevant is None or (host_features & relevant) <= (target_features & relevant):
        return lat
    factor = SLOWDOWN_WITHOUT_FEATURES[candidate.precision]
    return Latency(
        p50=max(lat.p50, fp32.p50 * factor),
        p95=max(lat.p95, fp32.p95 * factor),
        rounds=tuple(max(a, b * factor) for a, b in zip(lat.rounds, fp32.rounds, strict=False)),
    )


def confidently_not_slower(candidate: Latency, fp32: Latency, confidence: float = 0.75) -> bool:
    """Whether ``candidate`` is not slower than FP32 beyond doubt (pure).

    Its overall median must not exceed FP32's, and it must be at least as fast as FP32 in at least
    ``confidence`` of the paired, interleaved rounds (a load burst hits both members of a pair alike).

    >>> fp32 = Latency(1.0, 1.2, (1.0, 1.0, 0.55, 1.0))
    >>> confidently_not_slower(Latency(0.5, 0.7, (0.5, 0.5, 0.6, 0.5)), fp32)
    True
    >>> confidently_not_slower(Latency(0.99, 1.2, (0.95, 1.05, 1.0, 0.97)), fp32)
    False
    """
    if candidate.p50 > fp32.p50:
        return False
    pairs = list(zip(candidate.rounds, fp32.rounds, strict=False))
    if not pairs:
        return True
    wins = sum(1 for c, f in pairs if c <= f)
    return wins >= confidence * len(pairs)


def choose(
    task: str,
    candidates: Sequence[Candidate],
    budget: Budget,
    precision: Literal["auto", "fp32", "fp16", "int8"] = "auto",
    optimize_for: Objective = "latency",
    tolerance: float = 0.05,
) -> Choice:
    """Select the variant to ship (pure); see the module docstring for the rule and a worked example.

    ``candidates`` must include the FP32 reference named ``fp32``; latencies are already projected to the target.
    """
    verdicts: dict[str, GateVerdict] = {}
    for c in candidates:
        if c.error is not None:
            verdicts[c.name] = GateVerdict(False, f"failed: {c.error}")
            continue
        verdict = gate(task, c.fidelity, budget)
        if verdict.passed and c.latency is None:
            verdict = GateVerdict(False, "latency not measured")
        verdicts[c.name] = verdict
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
    if precision == "auto" and fp32 is not None:
        eligible = [c for c in eligible if c is fp32 or confidently_not_slower(lat(c), lat(fp32))]
    fastest = min(lat(c).p50 for c in eligible)
    group = [c for c in eligible if lat(c).p50 <= fastest * (1.0 + tolerance)]
    # Inside the group speed differences are noise, so ties are broken by size, then fidelity, then name:
    # never by latency, or equal runs could ship different bytes.
    best = min(group, key=lambda c: (c.size_bytes, severity(task, c.fidelity), c.name))
    if best is fp32:
        return Choice(
            best,
            "no variant in budget is confidently faster than optimised FP32",
            verdicts,
            _describe(best, fp32),
        )
    return Choice(best, "smallest of the fastest variants in budget", verdicts, _describe(best, fp32))


def _failures(candidates: Sequence[Candidate], verdicts: Mapping[str, GateVerdict]) -> str:
    return "; ".join(f"{c.name}: {verdicts[c.name].reason}" for c in candidates)


def _describe(c: Candidate, fp32: Candidate | None) -> str:
    if fp32 is None or fp32.latency is None or c.latency is None:
        return f"{c.latency.p50 if c.latency else float('nan'):.3f} ms, {c.size_bytes} bytes"
    speedup = fp32.latency.p50 / c.latency.p50 if c.latency.p50 > 0 else float("inf")
    ratio = fp32.size_bytes / c.size_bytes if c.size_bytes else float("inf")
    return f"{c.latency.p50:.3f} ms vs FP32 {fp32.latency.p50:.3f} ms, {speedup:.2f}x; {ratio:.2f}x smaller than FP32"


def report_rows(candidates: Sequence[Candidate], choice: Choice) -> list[dict[str, str]]:
    """One row of display strings per candidate, selected first marked, in candidate order (pure)."""
    fp32 = next((c for c in candidates if c.name == "fp32"), None)
    rows = []
    for c in candidates:
        verdict = choice.verdicts.get(c.name, GateVerdict(False, "not judged"))
        size_ratio = f"{fp32.size_bytes / c.size_bytes:.2f}x" if fp32 and c.size_bytes else "-"
        if c.latency is not None and fp32 is not None and fp32.latency is not None:
            speed = f"{fp32.latency.p50 / c.latency.p50:.2f}x" if c.latency.p50 > 0 else "-"
            p50, p95 = f"{c.latency.p50:.3f}", f"{c.latency.p95:.3f}"
        else:
            speed, p50, p95 = "-", "-", "-"
        rows.append(
            {
                "variant": ("* " if choice.selected is c else "  ") + c.name,
                "precision": c.precision,
                "size": str(c.size_bytes),
                "ratio": size_ratio,
                "p50_ms": p50,
                "p95_ms": p95,
                "speedup": speed,
                "fidelity": format_fidelity(c.fidelity),
                "verdict": verdict.reason,
            }
        )
    return rows


def format_fidelity(fidelity: Mapping[str, float]) -> str:
    """Short human form of fidelity numbers (pure).

    >>> format_fidelity({"top1Agreement": 0.99833, "accuracyDrop": 0.0})
    'agree 99.83% dAcc 0.00pt'
    """
    parts = []
    if "top1Agreement" in fidelity:
        parts.append(f"agree {100 * fidelity['top1Agreement']:.2f}%")
    if "accuracyDrop" in fidelity:
        parts.append(f"dAcc {100 * fidelity['accuracyDrop']:.2f}pt")
    if "relativeError" in fidelity:
        parts.append(f"relErr {fidelity['relativeError']:.2e}")
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
