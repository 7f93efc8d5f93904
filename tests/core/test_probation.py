"""Table tests for the pure probation decisions (edgefleet.core.probation): outcome of a verdict over the window,
restart counting -> rollback, the sentence a rollback leaves in status; plus the worked examples in the docstrings."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.api.modeldeployment import HealthSpec
from edgefleet.core import convergence, health, probation

SPEC = HealthSpec(latency_p95_ms=50, max_error_rate=0.25, min_samples=4, window_seconds=60)


@pytest.mark.parametrize("module", [probation, health, convergence])
def test_worked_examples_in_docstrings_hold(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.failed == 0 and result.attempted > 0


def verdict(name: health.VerdictName, code: str | None = None, reason: str | None = None) -> health.HealthVerdict:
    return health.HealthVerdict(name, 0, 0, 0, None, None, code, reason)


@pytest.mark.parametrize(
    ("name", "switched", "now", "outcome"),
    [
        ("Unhealthy", 0, 1, "rollback"),
        ("Healthy", 0, 30, "watch"),
        ("Healthy", 0, 60, "confirm"),  # a whole window passed
        ("Pending", 0, 59.9, "watch"),
        ("Pending", 0, 61, "confirm"),  # no traffic cannot prove a version bad
        ("Unhealthy", 0, 1000, "rollback"),  # Unhealthy wins over a passed window
        ("Healthy", 100, 130, "watch"),
    ],
)
def test_outcome_table(name: health.VerdictName, switched: float, now: float, outcome: str) -> None:
    assert probation.outcome(verdict(name), switched, now, SPEC) == outcome


@given(st.sampled_from(["Pending", "Healthy", "Unhealthy"]), st.floats(0, 1e6), st.floats(0, 1e6))
def test_outcome_invariants(name: health.VerdictName, switched: float, elapsed: float) -> None:
    result = probation.outcome(verdict(name), switched, switched + elapsed, SPEC)
    assert (result == "rollback") == (name == "Unhealthy")
    if name != "Unhealthy":
        assert (result == "confirm") == (elapsed >= SPEC.window_seconds)


@pytest.mark.parametrize(
    ("before", "after", "rolls_back"),
    [(0, 1, False), (1, 2, False), (2, 3, True), (7, 8, True)],
)
def test_restart_counting_table(before: int, after: int, rolls_back: bool) -> None:
    restart = probation.after_restart(before, "2.0.0")
    assert restart.restarts == after
    assert (restart.rollback is not None) == rolls_back
    if restart.rollback is not None:
        assert restart.rollback.code == "WorkerCrashes"
        assert (
            restart.rollback.reason == f"the agent stopped uncleanly {after} times while version 2.0.0 was on probation"
        )


def test_a_crash_loop_rolls_back_on_the_start_after_max_restarts() -> None:
    count, starts = 0, 0
    while True:
        starts += 1
        restart = probation.after_restart(count, "2.0.0")
        if restart.rollback is not None:
            break
        count = restart.restarts
    assert starts == probation.MAX_RESTARTS + 1


@pytest.mark.parametrize(
    ("code", "reason", "expected_code"),
    [
        ("LatencyP95", "p95 latency 90.00 ms is above latencyP95Ms 50.0", "LatencyP95"),
        ("NonFiniteOutput", "1 of 1 inferences produced NaN or Inf outputs", "NonFiniteOutput"),
        (None, None, "Unhealthy"),
    ],
)
def test_unhealthy_verdict_becomes_a_rollback(code: str | None, reason: str | None, expected_code: str) -> None:
    rollback = probation.unhealthy(verdict("Unhealthy", code, reason))
    assert rollback.code == expected_code and rollback.reason == (reason or "")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("1.0.0", "rolled back version 2.0.0 to 1.0.0: ErrorRate: too many"),
        (None, "rolled back version 2.0.0: ErrorRate: too many"),
    ],
)
def test_rollback_message(target: str | None, message: str) -> None:
    assert probation.Rollback("ErrorRate", "too many").message("2.0.0", target) == message


def test_verdict_over_the_window_drives_the_outcome() -> None:
    """The whole decision from samples: a slow window rolls back, the same samples after the window confirm."""
    slow = [health.Sample(t, 90.0) for t in (1.0, 2.0, 3.0, 4.0)]
    assert probation.outcome(health.evaluate(slow, SPEC, 5.0), 0.0, 5.0, SPEC) == "rollback"
    later = health.evaluate(slow, SPEC, 70.0)  # every sample left the window
    assert later.verdict == "Pending"
    assert probation.outcome(later, 0.0, 70.0, SPEC) == "confirm"
