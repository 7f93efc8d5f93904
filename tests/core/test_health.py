"""Table tests and invariants for the pure health verdicts (edgefleet.core.health)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.api.modeldeployment import HealthSpec
from edgefleet.core import health

S = health.Sample
SPEC = HealthSpec(latency_p95_ms=50, max_error_rate=0.25, min_samples=4, window_seconds=60)


@pytest.mark.parametrize(
    ("samples", "now", "verdict", "code"),
    [
        ([], 5, "Pending", None),
        ([S(1, 10), S(2, 12), S(3, 11)], 5, "Pending", None),
        ([S(1, 10), S(2, 12), S(3, 11), S(4, 13)], 5, "Healthy", None),
        # the module's worked example
        ([S(1, 10), S(2, 12), S(3, 11), S(4, 90, error=True)], 5, "Healthy", None),
        ([S(1, 10), S(2, 12), S(3, 11), S(4, 90)], 5, "Unhealthy", "LatencyP95"),
        ([S(1, 10), S(2, 0, error=True), S(3, 0, error=True), S(4, 13)], 5, "Unhealthy", "ErrorRate"),
        # one NaN is enough, before minSamples
        ([S(1, 10, non_finite=True)], 5, "Unhealthy", "NonFiniteOutput"),
        # samples outside the window are ignored
        ([S(1, 500), S(2, 500), S(100, 10), S(101, 10), S(102, 10), S(103, 10)], 110, "Healthy", None),
        ([S(1, 10, non_finite=True), S(100, 10)], 110, "Pending", None),
    ],
)
def test_verdict_table(samples: list[health.Sample], now: float, verdict: str, code: str | None) -> None:
    result = health.evaluate(samples, SPEC, now)
    assert (result.verdict, result.code) == (verdict, code)
    if code:
        assert result.reason


def test_latency_from_worked_example() -> None:
    samples = [S(1, 10), S(2, 12), S(3, 11), S(4, 90, error=True)]
    v = health.evaluate(samples, HealthSpec(latency_p95_ms=50, max_error_rate=0.25, min_samples=4), 5)
    assert (v.samples, v.errors, v.latency_p50_ms, v.latency_p95_ms) == (4, 1, 11, 12)
    v = health.evaluate([S(1, 10), S(2, 12), S(3, 11), S(4, 90)], SPEC, 5)
    assert v.latency_p95_ms == 90 and "90.00 ms" in (v.reason or "")


def test_non_finite_ignored_when_disabled() -> None:
    spec = SPEC.model_copy(update={"fail_on_non_finite": False})
    assert health.evaluate([S(1, 10, non_finite=True)], spec, 5).verdict == "Pending"


samples_st = st.lists(
    st.builds(
        health.Sample,
        at=st.floats(0, 100),
        latency_ms=st.floats(0, 200),
        error=st.booleans(),
        non_finite=st.booleans(),
    ),
    max_size=60,
)


@given(samples_st, st.floats(0, 120))
def test_order_does_not_matter_and_counts_are_consistent(samples: list[health.Sample], now: float) -> None:
    a = health.evaluate(samples, SPEC, now)
    b = health.evaluate(list(reversed(samples)), SPEC, now)
    assert a == b
    assert a.errors <= a.samples and a.non_finite <= a.samples
    assert a.samples == len(health.in_window(samples, SPEC, now))
    if a.latency_p50_ms is not None and a.latency_p95_ms is not None:
        assert a.latency_p50_ms <= a.latency_p95_ms


@given(samples_st, st.floats(0, 120))
def test_adding_a_non_finite_sample_never_makes_it_healthier(samples: list[health.Sample], now: float) -> None:
    bad = [*samples, health.Sample(now, 1.0, non_finite=True)]
    assert health.evaluate(bad, SPEC, now).verdict == "Unhealthy"
