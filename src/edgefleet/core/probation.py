"""Probation: keep watching, confirm, or roll back a version a device has just switched to (pure).

When a device switches a model from a serving version to a new one, the new version is on *probation* for one
health window (``HealthSpec.windowSeconds``) and the previous version stays loaded in the other slot, so that a
rollback is a pointer swap. Three things end probation:

1. an ``Unhealthy`` verdict over the window (:func:`edgefleet.core.health.evaluate`): roll back at once
   (:func:`outcome`, :func:`unhealthy`);
2. the agent itself going down: every start of the agent while a version is on probation counts, and the start
   after :data:`MAX_RESTARTS` rolls the version back before it is loaded again (:func:`after_restart`); a version
   that takes the agent down never lives long enough to get an Unhealthy verdict;
3. a whole window without an ``Unhealthy`` verdict: confirm (:func:`outcome`); a device without traffic cannot prove
   a version bad, and must not hold later versions back forever.

A rolled-back digest is not installed again until the desired digest changes (:mod:`edgefleet.core.convergence`).

Worked example: window 60 s, version 2.0.0 switched to at ``t=0`` from 1.0.0. At ``t=30`` the verdict is
``Pending``: ``watch``. At ``t=45`` the p95 latency is 90 ms over a 50 ms limit: ``rollback``, and status says
``rolled back version 2.0.0 to 1.0.0: LatencyP95: p95 latency 90.00 ms is above latencyP95Ms 50.0``. Had the verdict
stayed ``Healthy`` or ``Pending``, ``t=60`` would have confirmed 2.0.0.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from edgefleet.api.modeldeployment import HealthSpec
from edgefleet.core import health

MAX_RESTARTS = 2
"""Starts of the agent one probation survives; the next one rolls the version back (the third unclean start)."""

ProbationOutcome = Literal["watch", "confirm", "rollback"]


@dataclasses.dataclass(frozen=True)
class Rollback:
    """Why a version is rolled back: a CamelCase ``code`` and the ``reason`` a person reads."""

    code: str
    reason: str

    def message(self, version: str, target: str | None = None) -> str:
        """The sentence status and the journal carry for the rejected digest (pure).

        >>> Rollback("ErrorRate", "error rate 0.500 (2/4) is above maxErrorRate 0.1").message("2.0.0", "1.0.0")
        'rolled back version 2.0.0 to 1.0.0: ErrorRate: error rate 0.500 (2/4) is above maxErrorRate 0.1'
        >>> Rollback("WorkerCrashes", "the agent stopped uncleanly 3 times").message("2.0.0")
        'rolled back version 2.0.0: WorkerCrashes: the agent stopped uncleanly 3 times'
        """
        to = f" to {target}" if target is not None else ""
        return f"rolled back version {version}{to}: {self.code}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class Restart:
    """What one start of the agent means for a version on probation: the new count, and a rollback once too many."""

    restarts: int
    rollback: Rollback | None = None


def outcome(verdict: health.HealthVerdict, switched_at: float, now: float, spec: HealthSpec) -> ProbationOutcome:
    """What to do with a model on probation since ``switched_at`` (pure).

    ``rollback`` as soon as the verdict is Unhealthy; ``confirm`` once a whole window has passed without that;
    else ``watch``.

    >>> v = health.HealthVerdict("Pending", 0, 0, 0, None, None)
    >>> outcome(v, switched_at=0.0, now=30.0, spec=HealthSpec(window_seconds=60))
    'watch'
    >>> outcome(v, switched_at=0.0, now=61.0, spec=HealthSpec(window_seconds=60))
    'confirm'
    >>> bad = health.HealthVerdict("Unhealthy", 4, 0, 0, 11.0, 90.0, "LatencyP95", "p95 latency 90.00 ms ...")
    >>> outcome(bad, switched_at=0.0, now=45.0, spec=HealthSpec(window_seconds=60))
    'rollback'
    """
    if verdict.verdict == "Unhealthy":
        return "rollback"
    if now - switched_at >= spec.window_seconds:
        return "confirm"
    return "watch"


def unhealthy(verdict: health.HealthVerdict) -> Rollback:
    """The rollback an Unhealthy verdict asks for (pure).

    >>> unhealthy(health.HealthVerdict("Unhealthy", 1, 0, 1, 1.0, 1.0, "NonFiniteOutput", "1 of 1 ...")).code
    'NonFiniteOutput'
    """
    return Rollback(verdict.code or "Unhealthy", verdict.reason or "")


def after_restart(restarts: int, version: str) -> Restart:
    """Count one more start of the agent while ``version`` is on probation, after ``restarts`` earlier ones (pure).

    A clean stop resets the count, so only starts after crashes add up to a rollback.

    >>> after_restart(0, "2.0.0")
    Restart(restarts=1, rollback=None)
    >>> after_restart(1, "2.0.0").rollback is None
    True
    >>> third = after_restart(2, "2.0.0")
    >>> third.restarts, third.rollback.code if third.rollback else None
    (3, 'WorkerCrashes')
    """
    count = restarts + 1
    if count <= MAX_RESTARTS:
        return Restart(count)
    reason = f"the agent stopped uncleanly {count} times while version {version} was on probation"
    return Restart(count, Rollback("WorkerCrashes", reason))


__all__ = ["MAX_RESTARTS", "ProbationOutcome", "Restart", "Rollback", "after_restart", "outcome", "unhealthy"]
