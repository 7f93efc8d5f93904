"""The state of one planning pass: what status remembers, what people signal, the inputs, and how the pass ends.

* :class:`RolloutState` is the rollout's memory, read from and written back to named ``status`` fields
  (``stableRevision``, ``canaryRevision``, ``currentStepIndex``, ``stepStartedAt``, ``abortedRevision``,
  ``rolloutFailure``, ``lastAttemptedRevision``, ``compileFailure``). The planner never reads conditions or the phase
  back as memory: they are outputs, recomputed every pass.
* :class:`RolloutSignals` are the manual signals on the deployment (``spec.paused`` and the annotations). Each names
  what it acts on, so a stale value is ignored and applying one twice changes nothing.
* :class:`PlanningPass` holds the inputs of one pass and its two accumulators: the
  :class:`~edgefleet.core.planner.availability.Ledger` of device entries and the events.
* :class:`RolloutSummary` is how the pass ends: phase, Ready/Stalled causes and when to look again.

Everything here is pure.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from typing import Literal

from edgefleet.api import common, edgedevice, modeldeployment
from edgefleet.core import conditions, revisions, windows
from edgefleet.core.planner import analysis, availability, devices, reachability

ANNOTATION_PROMOTE = "edgefleet.io/promote"
ANNOTATION_ABORT = "edgefleet.io/abort"
ANNOTATION_PAUSED = "edgefleet.io/paused"
ANNOTATION_PROMOTE_FULL = "edgefleet.io/promote-full"
"""``<revision>``: skip every remaining step of that revision up to its last ``setWeight: 100``."""
ANNOTATION_RETRY = "edgefleet.io/retry"
"""``<abortedRevision>/<token>``: roll the aborted revision out again from step 1; each new token retries once."""

EventType = Literal["Normal", "Warning"]
HELD_UNREACHABLE = "TooManyUnreachable"
"""The reason of Ready (and Reconciling) while a rollout is held for too many unreachable devices."""


@dataclasses.dataclass(frozen=True)
class Event:
    """A Kubernetes event to record on the ModelDeployment."""

    type: EventType
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class RolloutSignals:
    """What people asked for, from ``spec.paused`` and the annotations.

    >>> signals = RolloutSignals(promote="2.0.0-abc/1", abort="1.9.0-def", held="")
    >>> signals.promotes("2.0.0-abc", 1), signals.promotes("2.0.0-abc", 0), signals.aborts("2.0.0-abc")
    (True, False, False)
    """

    promote: str
    abort: str
    held: str
    """Why forward changes are held ("" when they are not)."""
    promote_full: str = ""
    retry: str = ""

    @classmethod
    def of(cls, md: modeldeployment.ModelDeployment) -> RolloutSignals:
        annotations = md.metadata.annotations or {}
        held = ""
        if md.spec.paused:
            held = "spec.paused is true"
        elif annotations.get(ANNOTATION_PAUSED) == "true":
            held = f"annotation {ANNOTATION_PAUSED} is true"
        return cls(
            annotations.get(ANNOTATION_PROMOTE, ""),
            annotations.get(ANNOTATION_ABORT, ""),
            held,
            promote_full=annotations.get(ANNOTATION_PROMOTE_FULL, ""),
            retry=annotations.get(ANNOTATION_RETRY, ""),
        )

    def promotes(self, revision: str, step: int) -> bool:
        """The promote annotation names this step of this revision."""
        return self.promote == f"{revision}/{step}"

    def aborts(self, revision: str) -> bool:
        """The abort annotation names this revision."""
        return self.abort == revision

    def promotes_fully(self, revision: str) -> bool:
        """The promote-full annotation names this revision."""
        return self.promote_full == revision

    def retries(self, revision: str, last_retry: str | None) -> bool:
        """The retry annotation names this aborted revision with a token not honoured before.

        >>> RolloutSignals("", "", "", retry="2.0.0-abc/1").retries("2.0.0-abc", None)
        True
        >>> RolloutSignals("", "", "", retry="2.0.0-abc/1").retries("2.0.0-abc", "2.0.0-abc/1")
        False
        """
        return self.retry.startswith(f"{revision}/") and self.retry != last_retry


@dataclasses.dataclass(frozen=True)
class RolloutState:
    """The rollout's memory, as the named status fields hold it."""

    stable_revision: str | None = None
    canary_revision: str | None = None
    aborted_revision: str | None = None
    step: int | None = None
    started: dt.datetime | None = None
    rollout_failure: modeldeployment.RolloutFailure | None = None
    last_attempted_revision: str | None = None
    compile_failure: modeldeployment.CompileFailure | None = None
    hold: reachability.Hold = dataclasses.field(default_factory=reachability.Hold)
    """Whether the rollout is held for too many unreachable devices (``status.reachability.heldSince`` and
    ``recoveringSince``)."""
    last_retry: str | None = None

    @classmethod
    def of(cls, status: modeldeployment.ModelDeploymentStatus) -> RolloutState:
        return cls(
            stable_revision=status.stable_revision,
            canary_revision=status.canary_revision,
            aborted_revision=status.aborted_revision,
            step=status.current_step_index,
            started=status.step_started_at,
            rollout_failure=status.rollout_failure,
            last_attempted_revision=status.last_attempted_revision,
            compile_failure=status.compile_failure,
            hold=reachability.Hold(status.reachability.held_since, status.reachability.recovering_since),
            last_retry=status.last_retry,
        )

    def without_canary(self) -> RolloutState:
        """No rollout running."""
        return dataclasses.replace(self, canary_revision=None, step=None, started=None, hold=reachability.Hold())

    def status_fields(self) -> dict[str, object]:
        """The status fields this state writes (``model_copy`` updates)."""
        return {
            "stable_revision": self.stable_revision,
            "canary_revision": self.canary_revision,
            "aborted_revision": self.aborted_revision,
            "current_step_index": self.step,
            "current_step": None if self.step is None else self.step + 1,
            "step_started_at": self.started,
            "rollout_failure": self.rollout_failure,
            "last_attempted_revision": self.last_attempted_revision,
            "compile_failure": self.compile_failure,
            "last_retry": self.last_retry,
        }


@dataclasses.dataclass(frozen=True)
class RolloutSummary:
    """How a pass ends: the phase, Ready's status and cause, Stalled's cause, and when to look again."""

    phase: modeldeployment.Phase
    ready: common.ConditionStatus
    cause: conditions.Cause
    stalled: conditions.Cause | None = None
    wake_in: float | None = None

    @property
    def message(self) -> str:
        return self.cause.message

    @classmethod
    def unknown(
        cls, phase: modeldeployment.Phase, reason: str, message: str, wake_in: float | None = None
    ) -> RolloutSummary:
        """Ready=Unknown: the rollout is on its way (Progressing, Compiling) or waiting for a person (Paused)."""
        return cls(phase, "Unknown", conditions.Cause(reason, message), wake_in=wake_in)

    @classmethod
    def stalled_by(
        cls, phase: modeldeployment.Phase, reason: str, message: str, wake_in: float | None = None
    ) -> RolloutSummary:
        """Ready=False and Stalled=True for the same cause: only a person (or a new spec) moves it on."""
        cause = conditions.Cause(reason, message)
        return cls(phase, "False", cause, cause, wake_in)


@dataclasses.dataclass(frozen=True)
class PlanningPass:
    """The inputs of one planning pass, with its two accumulators (the ledger and the events)."""

    deployment: str
    spec: modeldeployment.ModelDeploymentSpec
    now: dt.datetime
    signals: RolloutSignals
    views: tuple[devices.DeviceView, ...]
    targeted: tuple[devices.DeviceView, ...]
    candidate: revisions.RevisionTemplate | None
    """The template of the spec's revision; None while it is not compiled."""
    stable: revisions.RevisionTemplate | None
    """The template of the stable revision the pass started with."""
    ledger: availability.Ledger
    events: list[Event]

    @classmethod
    def of(
        cls,
        md: modeldeployment.ModelDeployment,
        observed: Sequence[edgedevice.EdgeDevice],
        candidate: revisions.RevisionTemplate | None,
        stable: revisions.RevisionTemplate | None,
        now: dt.datetime,
        contacts: Mapping[str, reachability.Contact] | None = None,
    ) -> PlanningPass:
        contacts = contacts or {}
        views = tuple(
            devices.view(d, md, now, contacts.get(d.metadata.name))
            for d in sorted(observed, key=lambda d: d.metadata.name)
        )
        targeted = tuple(d for d in views if d.targeted)
        rollout = md.spec.rollout
        limit = availability.resolve_max_unavailable(rollout.max_unavailable, len(targeted))
        window_open = windows.is_open(rollout.maintenance_windows, now)
        ledger = availability.Ledger(views, limit, window_open, now, rollout.desired_validity_seconds)
        return cls(
            md.metadata.name, md.spec, now, RolloutSignals.of(md), views, targeted, candidate, stable, ledger, []
        )

    @functools.cached_property
    def unreachable(self) -> tuple[devices.DeviceView, ...]:
        """The targeted devices the rollout cannot count on now, longest unreachable first."""
        out = [d for d in self.targeted if not d.reachable]
        return tuple(sorted(out, key=lambda d: (d.reach.since or self.now, d.name)))

    def unreachable_after(self) -> list[tuple[str, reachability.Reachability]]:
        """The targeted devices that are unreachable with the entries the pass leaves them (what status reports, and
        what the next pass starts from), longest unreachable first."""
        pickup = self.spec.rollout.pickup_timeout_seconds
        out = []
        for d in self.targeted:
            verdict = reachability.judge(self.ledger.entry(d), d.report, d.contact, pickup, self.now)
            if not verdict.reachable:
                out.append((d.name, verdict))
        return sorted(out, key=lambda item: (item[1].since or self.now, item[0]))

    def unreachable_limit(self) -> int:
        """``maxUnreachable`` as a device count."""
        return reachability.resolve_max_unreachable(self.spec.rollout.max_unreachable, len(self.targeted))

    def outage(self, held: reachability.Hold) -> RolloutSummary:
        """The summary while too many targeted devices are unreachable: held, resuming by itself."""
        lost, total = self.unreachable, len(self.targeted)
        names = devices.names(d.name for d in lost)
        assert held.since is not None
        limit = f"maxUnreachable {self.spec.rollout.max_unreachable} ({self.unreachable_limit()})"
        if held.recovering_since is None:
            message = (
                f"Rollout is held since {held.since.isoformat()}: {len(lost)}/{total} targeted devices are "
                f"unreachable ({names}), more than {limit}; it resumes by itself once enough of them are back"
            )
        else:
            message = (
                f"Rollout is held since {held.since.isoformat()}: {len(lost)}/{total} targeted devices are "
                f"unreachable, within {limit} since {held.recovering_since.isoformat()}; it resumes after "
                f"{reachability.MIN_HOLD_SECONDS:.0f}s in a row within it"
            )
        return RolloutSummary.unknown("Paused", HELD_UNREACHABLE, message, analysis.POLL_SECONDS)

    def template(self, revision: str | None) -> revisions.RevisionTemplate | None:
        """The template of ``revision`` if the pass has it (the candidate or the stable one)."""
        for template in (self.candidate, self.stable):
            if template is not None and template.revision == revision:
                return template
        return None

    def entry_for(self, revision: str | None, device: devices.DeviceView) -> edgedevice.DesiredModel | None:
        """The entry ``device`` gets for ``revision`` (None: no template, or no compile target covers it)."""
        template = self.template(revision)
        return template.desired_for(self.deployment, device.labels) if template is not None else None

    def canary_entry(self, device: devices.DeviceView) -> edgedevice.DesiredModel | None:
        assert self.candidate is not None
        return self.candidate.desired_for(self.deployment, device.labels)

    def emit(self, type_: EventType, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def device_wait(self) -> float:
        """When to look again while waiting for devices: at the next maintenance window if none is open."""
        if not self.ledger.window_open:
            opening = windows.next_opening(self.spec.rollout.maintenance_windows, self.now)
            if opening is not None:
                return (opening - self.now).total_seconds()
        return analysis.POLL_SECONDS

    def held(self) -> RolloutSummary:
        """The summary while ``spec.paused`` or the paused annotation holds the rollout."""
        return RolloutSummary.unknown("Paused", "Paused", f"Rollout is held: {self.signals.held}")


__all__ = [
    "ANNOTATION_ABORT",
    "ANNOTATION_PAUSED",
    "ANNOTATION_PROMOTE",
    "ANNOTATION_PROMOTE_FULL",
    "ANNOTATION_RETRY",
    "HELD_UNREACHABLE",
    "Event",
    "EventType",
    "PlanningPass",
    "RolloutSignals",
    "RolloutState",
    "RolloutSummary",
]
