"""Table tests and invariants of the pure selection rule."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.compiler import selection

BUDGET = selection.Budget(max_accuracy_drop=0.01, max_relative_error=0.01)


def lat(p50: float, rounds: tuple[float, ...] | None = None) -> selection.Latency:
    return selection.Latency(p50=p50, p95=p50 * 1.3, rounds=rounds if rounds is not None else (p50,) * 7)


def cand(name: str, precision: selection.Precision, size: int, p50: float | None, **fid: float) -> selection.Candidate:
    return selection.Candidate(
        name=name,
        precision=precision,
        size_bytes=size,
        compressed_bytes=size,
        fidelity=fid or {"relativeError": 0.0},
        latency=lat(p50) if p50 is not None else None,
    )


@pytest.mark.parametrize(
    ("task", "fidelity", "passed"),
    [
        ("classification", {"top1Agreement": 1.0}, True),
        ("classification", {"top1Agreement": 0.99}, True),
        ("classification", {"top1Agreement": 0.989}, False),
        ("classification", {"top1Agreement": 1.0, "accuracyDrop": 0.02}, False),
        ("classification", {"relativeError": 0.0}, False),  # agreement missing: never passes
        ("regression", {"relativeError": 0.01}, True),
        ("anomaly-score", {"relativeError": 0.0101}, False),
        ("detection", {"relativeError": float("nan")}, False),
        ("other", {"relativeError": float("inf")}, False),
        ("other", {}, False),
    ],
)
def test_gate(task: str, fidelity: dict[str, float], passed: bool) -> None:
    assert selection.gate(task, fidelity, BUDGET).passed is passed


@pytest.mark.parametrize(
    ("agreement", "interval", "samples", "state", "needed"),
    [
        (1.0, (0.0, 0.0045), 600, "pass", None),  # 0 of 600 disagree: the upper bound is within 1 %
        (1.0, (0.0, 0.0406), 64, "undecided", 268),  # 0 of 64: 64 samples cannot show <= 1 %
        (0.9844, (0.0035, 0.067), 64, "undecided", None),  # 1 of 64 is 1.56 % as measured, but cannot be decided
        (0.95, (0.03, 0.075), 200, "fail", None),  # clearly over
    ],
)
def test_the_gate_knows_its_sample_size(
    agreement: float, interval: tuple[float, float], samples: int, state: str, needed: int | None
) -> None:
    verdict = selection.gate("classification", {"top1Agreement": agreement}, BUDGET, {"severity": interval}, samples)
    assert (verdict.state, verdict.needed, verdict.passed) == (state, needed, state == "pass")
    if state == "undecided":
        assert f"{samples} evaluation samples" in verdict.reason
    # optimised FP32 is judged on its figure alone: it is the reference
    assert selection.gate("classification", {"top1Agreement": 1.0}, BUDGET, {"severity": interval}, samples, False)


FP32 = cand("fp32", "fp32", 1000, 1.0)
FP16 = cand("fp16", "fp16", 500, 1.01)
FP16_SLOWER = cand("fp16", "fp16", 500, 1.10)
INT8_FAST = cand("int8-a", "int8", 260, 0.6)
INT8_FAST_SMALLER = cand("int8-b", "int8", 250, 0.62)
INT8_SLOW = cand("int8-c", "int8", 240, 1.6)
INT8_BAD = cand("int8-d", "int8", 230, 0.3, relativeError=0.5)
INT8_BROKEN = dataclasses.replace(cand("int8-e", "int8", 0, None), error="onnxruntime refuses to load the result")


@pytest.mark.parametrize(
    ("candidates", "precision", "objective", "expected"),
    [
        # the fastest group is {int8-a, int8-b} (within 5 %); the smaller one wins
        ([FP32, FP16, INT8_FAST, INT8_FAST_SMALLER, INT8_SLOW], "auto", "latency", "int8-b"),
        # only slower candidates: optimised FP32 wins
        ([FP32, INT8_SLOW], "auto", "latency", "fp32"),
        # FP16 at 1.01 ms is as fast as FP32 at 1.00 ms (within 5 %) and half the size: it ships
        ([FP32, FP16], "auto", "latency", "fp16"),
        # FP16 10 % slower than FP32 is slower: FP32 ships
        ([FP32, FP16_SLOWER], "auto", "latency", "fp32"),
        # a candidate outside the budget is never selected, however fast
        ([FP32, INT8_BAD], "auto", "latency", "fp32"),
        ([FP32, INT8_BROKEN, INT8_FAST], "auto", "latency", "int8-a"),
        # size first: smallest in budget even when slower
        ([FP32, FP16, INT8_FAST, INT8_SLOW, INT8_BAD], "auto", "size", "int8-c"),
        # explicit precisions choose inside the precision
        ([FP32, FP16, INT8_FAST], "fp16", "latency", "fp16"),
        ([FP32, FP16, INT8_FAST, INT8_SLOW], "int8", "latency", "int8-a"),
        ([FP32, INT8_SLOW], "int8", "latency", "int8-c"),
        ([FP32, FP16], "fp32", "latency", "fp32"),
    ],
)
def test_choose(candidates: list[selection.Candidate], precision: str, objective: str, expected: str) -> None:
    choice = selection.choose("regression", candidates, BUDGET, precision, objective)  # type: ignore[arg-type]
    assert choice.selected is not None
    assert choice.selected.name == expected


@pytest.mark.parametrize(
    ("candidates", "precision"),
    [([FP32, INT8_BAD, INT8_BROKEN], "int8"), ([FP32], "fp16")],
)
def test_choose_fails_with_every_candidates_reason(candidates: list[selection.Candidate], precision: str) -> None:
    choice = selection.choose("regression", candidates, BUDGET, precision)  # type: ignore[arg-type]
    assert choice.selected is None
    assert f"no {precision} candidate meets the accuracy budget" == choice.reason
    for c in candidates:
        assert c.name in choice.detail


def test_noisy_rounds_keep_fp32() -> None:
    """Faster median, but some paired rounds 10-30 % slower: not confidently not slower than FP32, FP32 wins."""
    fp32 = dataclasses.replace(FP32, latency=lat(1.0, (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)))
    noisy = dataclasses.replace(INT8_FAST, latency=lat(0.9, (0.8, 1.2, 0.8, 1.3, 0.85, 1.1, 0.8)))
    choice = selection.choose("regression", [fp32, noisy], BUDGET)
    assert choice.selected is fp32
    steady = dataclasses.replace(INT8_FAST, latency=lat(0.9, (0.8, 0.9, 0.8, 1.04, 0.85, 0.9, 0.8)))
    assert selection.choose("regression", [fp32, steady], BUDGET).selected is steady


def test_not_measured_on_the_target_class_ships_fp32() -> None:
    choice = selection.choose("regression", [FP32, FP16, INT8_FAST], BUDGET, measured_on_target=False)
    assert choice.selected is FP32 and "no variant is assumed faster than FP32" in choice.reason
    explicit = selection.choose("regression", [FP32, FP16, INT8_FAST], BUDGET, "int8", measured_on_target=False)
    assert explicit.selected is INT8_FAST  # an explicit precision still ships, the smallest of it in budget


def _device(fp32_ms: float, int8_ms: float, fp16_ms: float) -> dict[str, tuple[float, float, tuple[float, ...]]]:
    """What a device reports: p50, p95 and five round medians per variant (a little jitter in each round)."""
    jitter = (1.0, 1.01, 0.99, 1.02, 0.98)
    return {
        v: (ms, ms * 1.2, tuple(ms * j for j in jitter))
        for v, ms in (("fp32", fp32_ms), ("int8-a", int8_ms), ("fp16", fp16_ms))
    }


def test_device_measurements_change_the_choice_for_a_class() -> None:
    """The same in-budget candidates; each class's devices report their own timings; each class gets its own choice."""
    host_fidelity = [FP32, FP16, INT8_FAST]
    vnni = selection.pool([_device(2.0, 1.2, 2.1), _device(2.2, 1.3, 2.3)])  # INT8 1.7x faster on both devices
    avx2 = selection.pool([_device(2.0, 3.1, 2.04)])  # INT8 slower than FP32, FP16 as fast: FP16 is smaller
    chosen = {}
    for cls, pooled in (("x86-64-vnni", vnni), ("x86-64-avx2", avx2)):
        timed = [dataclasses.replace(c, latency=pooled[c.name]) for c in host_fidelity]
        choice = selection.choose("regression", timed, BUDGET)
        assert choice.selected is not None
        chosen[cls] = choice.selected.name
    assert chosen == {"x86-64-vnni": "int8-a", "x86-64-avx2": "fp16"}
    # and before any device reported, both classes get FP32
    assert selection.choose("regression", host_fidelity, BUDGET, measured_on_target=False).selected is FP32


@pytest.mark.parametrize(
    ("precision", "quantization", "has_calibration", "expected"),
    [
        ("fp32", selection.QuantizationChoices(), True, ["fp32"]),
        ("fp16", selection.QuantizationChoices(), True, ["fp32", "fp16"]),
        ("int8", selection.QuantizationChoices(), False, ["fp32", "int8-dynamic"]),
        (
            "auto",
            selection.QuantizationChoices(),
            True,
            [
                "fp32",
                "fp16",
                "int8-dynamic",
                "int8-qdq-s8s8-perchannel-minmax",
                "int8-qdq-s8s8-perchannel-percentile",
                "int8-qdq-s8s8-perchannel-entropy",
                "int8-qop-u8s8-perchannel-minmax",
            ],
        ),
        (
            "int8",
            selection.QuantizationChoices(method="static", format="QOperator", per_channel=False, reduce_range=True),
            True,
            ["fp32", "int8-qop-u8s8-pertensor-minmax-7bit"],
        ),
        ("int8", selection.QuantizationChoices(method="static"), False, ["fp32"]),
    ],
)
def test_plan_candidates(
    precision: str, quantization: selection.QuantizationChoices, has_calibration: bool, expected: list[str]
) -> None:
    plans = selection.plan_candidates(precision, quantization, has_calibration)  # type: ignore[arg-type]
    assert [p.name for p in plans] == expected


def test_plan_passes_excluded_nodes_to_every_int8_variant() -> None:
    plans = selection.plan_candidates("int8", selection.QuantizationChoices(exclude_nodes=("head",)), True)
    assert all(p.options["exclude_nodes"] == ("head",) for p in plans if p.precision == "int8")


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        ([], []),
        (["a"], []),
        (["a", "b"], [("a",)]),
        (["a", "b", "c", "d", "e"], [("a",), ("a", "b"), ("a", "b", "c", "d")]),
    ],
)
def test_exclusion_steps(nodes: list[str], expected: list[tuple[str, ...]]) -> None:
    assert selection.exclusion_steps(nodes) == expected


latencies = st.floats(min_value=0.01, max_value=10.0, allow_nan=False)


@st.composite
def candidate_sets(draw: st.DrawFn) -> list[selection.Candidate]:
    out = [
        selection.Candidate(
            "fp32",
            "fp32",
            draw(st.integers(1000, 2000)),
            1,
            {"relativeError": 0.0},
            selection.Latency(draw(latencies), 1.0, tuple(draw(st.lists(latencies, min_size=5, max_size=5)))),
        )
    ]
    for i in range(draw(st.integers(0, 6))):
        out.append(
            selection.Candidate(
                f"c{i}",
                draw(st.sampled_from(["fp16", "int8"])),
                draw(st.integers(1, 2000)),
                1,
                {"relativeError": draw(st.floats(0.0, 0.05))},
                selection.Latency(draw(latencies), 1.0, tuple(draw(st.lists(latencies, min_size=5, max_size=5)))),
            )
        )
    return out


@settings(max_examples=200, deadline=None)
@given(candidate_sets())
def test_auto_never_selects_a_slower_or_out_of_budget_variant(candidates: list[selection.Candidate]) -> None:
    choice = selection.choose("regression", candidates, BUDGET)
    fp32 = candidates[0]
    assert choice.selected is not None  # FP32 is always in budget
    assert choice.selected.fidelity["relativeError"] <= BUDGET.max_relative_error
    assert choice.selected.latency is not None and fp32.latency is not None
    # never slower than FP32: every paired round's ratio (here: the whole interval) is within the tolerance
    _, (_, high) = selection.speed_ratio(choice.selected.latency, fp32.latency)
    assert choice.selected is fp32 or high <= 1.0 + selection.DEFAULT_TOLERANCE
    # and every smaller candidate in budget is slower than FP32 or than the fastest one beyond the tolerance
    tol = 1.0 + selection.DEFAULT_TOLERANCE
    eligible = [
        c
        for c in candidates
        if selection.verdict_of("regression", c, BUDGET).passed
        and (c is fp32 or selection.speed_ratio(c.latency, fp32.latency)[1][1] <= tol)  # type: ignore[arg-type]
    ]
    fastest = min(eligible, key=lambda c: (selection.speed_ratio(c.latency, fp32.latency)[0], c.name))  # type: ignore[arg-type]
    assert fastest.latency is not None
    for c in eligible:
        if c.size_bytes < choice.selected.size_bytes:
            assert selection.speed_ratio(c.latency, fastest.latency)[0] > tol  # type: ignore[arg-type]
    # choosing is a function of its inputs: same answer on a second call and in another order
    again = selection.choose("regression", list(reversed(candidates)), BUDGET)
    assert again.selected is not None and again.selected.name == choice.selected.name


def test_report_marks_selection_and_reasons() -> None:
    choice = selection.choose("regression", [FP32, INT8_FAST, INT8_BAD], BUDGET)
    rows = selection.report_rows([FP32, INT8_FAST, INT8_BAD], choice)
    assert [r["variant"] for r in rows] == ["  fp32", "* int8-a", "  int8-d"]
    assert rows[2]["verdict"] == "relative error 0.5000 > budget 0.0100"
    assert rows[1]["ratio"] == "3.85x"
    text = selection.format_report(rows)
    assert text.splitlines()[0].startswith("variant")
