"""Evidence and verdicts: what the updated devices say about a canary, and whether an analysis step has passed.

The *updated* devices of a rollout are the targeted devices whose desired entry is the canary revision. Each of them
is healthy (runs the canary with a recent Healthy verdict), failed (reports it Unhealthy, or failed to install it, or
rolled itself back from it) or silent (anything else: still installing, no verdict yet, a verdict too old to count).

* **Too many failures** fail the rollout at any step: more failed devices than ``successThreshold`` allows of the
  updated ones (``floor((1 - threshold) * updated)``).
* **An analysis step** passes once its window has passed, the updated devices reported ``minSamples`` samples in
  total and the healthy share is at least ``successThreshold`` (or no device takes the canary at this weight). It fails
  when it has not passed ``progressDeadlineSeconds`` after its window: silent devices then count as failures.

Worked example (threshold 0.8, ``analysis 60s / 500 samples``, deadline 120 s, 10 updated devices reporting 60 samples
each): 8 healthy and 2 unhealthy after 61 s passes (80 %, 600 samples); 7 healthy and 3 silent waits, and fails at
181 s. Everything here is pure.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
from collections.abc import Sequence

from edgefleet.api import modeldeployment
from edgefleet.core.planner import availability, devices

POLL_SECONDS = 10.0
"""How soon to look again while waiting for devices (their status changes do not wake the deployment up)."""


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What the updated devices of a canary report."""

    updated: int
    healthy: int
    failed: tuple[str, ...]
    """The failed devices, each with what it reports."""
    silent: tuple[str, ...]
    samples: int
    unreachable: int = 0
    """Devices on the revision that are unreachable and not counted above."""

    @property
    def share(self) -> float:
        """The healthy share of the updated devices (1.0 when there are none)."""
        return self.healthy / self.updated if self.updated else 1.0

    def text(self, threshold: float) -> str:
        """The evidence as a person reads it in a condition or event.

        >>> Evidence(updated=2, healthy=1, failed=("d1 (p95 latency 80ms)",), silent=(), samples=120).text(0.8)
        '1/2 updated devices healthy (50%, threshold 80%); 120 samples; failed: d1 (p95 latency 80ms)'
        """
        parts = [
            f"{self.healthy}/{self.updated} updated devices healthy ({self.share:.0%}, threshold {threshold:.0%})",
            f"{self.samples} samples",
        ]
        if self.failed:
            parts.append(f"failed: {devices.names(self.failed)}")
        if self.silent:
            parts.append(f"no verdict: {devices.names(self.silent)}")
        return "; ".join(parts)


def gather(ledger: availability.Ledger, targeted: Sequence[devices.DeviceView], revision: str) -> Evidence:
    """The evidence on ``revision`` from the targeted devices whose entry (in ``ledger``) is that revision (pure).

    Only reachable devices are counted, with one exception: a device that reported a failure of ``revision`` counts
    as failed even after it went offline (the report is evidence; the silence of an offline device is not).
    """
    on = ledger.on(revision, targeted)
    updated = [d for d in on if d.reachable or d.failed(ledger.entry(d), revision)]
    failed = tuple(d.why_unhealthy() for d in updated if d.failed(ledger.entry(d), revision))
    healthy = [d.healthy(ledger.entry(d), revision) for d in updated]
    silent = tuple(
        d.name for d, ok in zip(updated, healthy, strict=True) if not ok and not d.failed(ledger.entry(d), revision)
    )
    samples = sum(d.samples(ledger.entry(d), revision) for d in updated)
    return Evidence(len(updated), sum(healthy), failed, silent, samples, unreachable=len(on) - len(updated))


def too_many_failures(evidence: Evidence, threshold: float) -> bool:
    """More failed devices than ``threshold`` allows of the updated ones (pure).

    >>> [too_many_failures(Evidence(10, 0, ("x",) * n, (), 0), 0.8) for n in (2, 3)]
    [False, True]
    """
    allowed = math.floor((1.0 - threshold) * evidence.updated + 1e-9)
    return len(evidence.failed) > allowed


class AnalysisVerdict(enum.StrEnum):
    """Where an analysis step stands."""

    PASSED = "Passed"
    FAILED = "Failed"
    WAITING = "Waiting"


@dataclasses.dataclass(frozen=True)
class AnalysisJudgement:
    """The verdict on an analysis step, with what a person reads and when to look again."""

    verdict: AnalysisVerdict
    detail: str = ""
    """Why it failed (FAILED) or how far it got (WAITING)."""
    wake_in: float | None = None
    """Seconds until the verdict can change (WAITING)."""
    restart_clock: bool = False
    """Waiting without evidence that could come in (WAITING): the step clock restarts, so the deadline cannot pass."""


def judge(
    analysis: modeldeployment.AnalysisStep,
    rollout: modeldeployment.RolloutSpec,
    evidence: Evidence,
    started: dt.datetime,
    now: dt.datetime,
) -> AnalysisJudgement:
    """The verdict on an analysis step that started at ``started`` (pure; see the module docstring).

    >>> t0 = dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)
    >>> step = modeldeployment.AnalysisStep(duration_seconds=60, min_samples=500)
    >>> policy = modeldeployment.RolloutSpec(steps=[{"setWeight": 100}], progress_deadline_seconds=120)
    >>> waiting = Evidence(10, 7, (), ("d7", "d8", "d9"), 600)
    >>> [judge(step, policy, e, t0, t0 + dt.timedelta(seconds=s)).verdict.value
    ...  for e, s in ((Evidence(10, 8, ("d8", "d9"), (), 600), 61), (waiting, 61), (waiting, 181))]
    ['Passed', 'Waiting', 'Failed']
    """
    threshold = rollout.success_threshold
    window_end = started + dt.timedelta(seconds=analysis.duration_seconds)
    deadline = window_end + dt.timedelta(seconds=rollout.progress_deadline_seconds)
    if now >= window_end and evidence.samples >= analysis.min_samples and evidence.share >= threshold:
        return AnalysisJudgement(AnalysisVerdict.PASSED)
    if evidence.updated == 0 and evidence.unreachable == 0 and now >= window_end:
        return AnalysisJudgement(AnalysisVerdict.PASSED)  # nothing to judge: no device takes the canary at this weight
    if evidence.updated == 0 and evidence.unreachable > 0:
        # Every device that runs the canary is unreachable: that is no evidence either way, so neither pass nor fail.
        return AnalysisJudgement(
            AnalysisVerdict.WAITING, f"no reachable device runs the canary ({evidence.unreachable} unreachable)",
            POLL_SECONDS, restart_clock=True,
        )  # fmt: skip
    if now >= deadline:
        return AnalysisJudgement(
            AnalysisVerdict.FAILED,
            f"analysis did not succeed within {rollout.progress_deadline_seconds}s after its window (min "
            f"{analysis.min_samples} samples); devices without a verdict count as failed",
        )
    wake = min(POLL_SECONDS, (window_end - now).total_seconds()) if now < window_end else POLL_SECONDS
    return AnalysisJudgement(
        AnalysisVerdict.WAITING,
        f"analysing: {evidence.healthy}/{evidence.updated} healthy, {evidence.samples}/{analysis.min_samples} samples",
        wake,
    )


__all__ = [
    "POLL_SECONDS",
    "AnalysisJudgement",
    "AnalysisVerdict",
    "Evidence",
    "gather",
    "judge",
    "too_many_failures",
]
