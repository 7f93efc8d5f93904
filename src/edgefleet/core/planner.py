"""The rollout planner: from a ModelDeployment, its devices and ``now`` to the devices' desired models and status.

:func:`plan` is pure. It reads the whole situation (the deployment with its status and annotations, every EdgeDevice of
the namespace with what it reports, the compiled template of the spec and of the stable revision) and returns data: the
``spec.models`` entry each device should have, the new status, the events to emit and when to look again. The operator
applies the plan; running the planner again on the applied result changes nothing (idempotent), which is what makes
reconciliation by level safe.

The rollout state lives in ``status``: ``stableRevision`` (what every device falls back to), ``canaryRevision`` (what is
being rolled out), ``currentStepIndex`` and ``stepStartedAt``, ``abortedRevision`` (never retried until the spec
changes). The rules:

* **First revision.** Without a stable revision there is nothing to canary against: the first revision becomes stable at
  once and is installed everywhere, ``maxUnavailable`` devices at a time.
* **Steps.** ``setWeight`` puts the canary on that share of devices (chosen by :mod:`edgefleet.core.canary`) and
  completes when all of them report the canary active. ``pause`` waits ``durationSeconds``, or without it until a
  promote annotation names this revision and step. ``analysis`` completes when the window has passed, the updated
  devices reported ``minSamples`` samples in total and the healthy share is at least ``successThreshold``. After the
  last step the canary becomes stable.
* **Failure.** At any time, more failed canary devices than ``successThreshold`` allows fail the rollout; an analysis
  that has not succeeded ``progressDeadlineSeconds`` after its window fails it, counting silent devices as failures; a
  ``setWeight`` step that has not completed within ``progressDeadlineSeconds`` fails it. With ``rollback.automatic`` the
  rollout is aborted: every device returns to stable, ``Ready=False reason=RolledBack`` carries the evidence and the
  revision is recorded as aborted. Without it the deployment is ``Degraded`` and ``Stalled`` until a person aborts or
  changes the spec.
* **Availability.** A device is unavailable while its desired revision differs from the one it reports active. A change
  that would make an available device unavailable is made only while fewer than ``maxUnavailable`` targeted devices are
  unavailable, and only inside a maintenance window. Changes that make a device available (for example returning a
  device that rolled itself back to stable) are always allowed.
* **Held.** ``spec.paused`` or the ``edgefleet.io/paused: "true"`` annotation stop all forward changes; an abort still
  returns devices to stable, because that is the safe direction. While held or waiting for a maintenance window the step
  clock restarts, so deadlines measure time in which progress was possible.
* **Manual signals** are level-triggered and idempotent because each names what it acts on: ``edgefleet.io/promote:
  "<revision>/<stepIndex>"`` completes that step of that revision (pause or analysis), ``edgefleet.io/abort:
  "<revision>"`` aborts that revision. Stale values are ignored.
* **Spec changes.** A new revision supersedes a running canary: its devices go back to stable and the new rollout starts
  at step 0 once compiled. Returning the spec to the stable revision ends the rollout.
* **Late joiners** get the stable revision; they become canaries only when a step needs more devices.

Worked example (20 devices on 5 lines, steps ``[setWeight 10, analysis 60s/100 samples, setWeight 100]``,
``maxUnavailable: 25%`` = 5): the first plan after compile puts the canary on 2 devices of 2 different lines and
requeues; once both report it active, step 0 completes and the analysis starts; after 60 s with 2/2 healthy and >= 100
samples the last step puts the canary on the remaining 18 devices, 5 at a time as devices converge; when all 20 run it,
the canary revision becomes stable and ``Ready=True``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from edgefleet.api import edgedevice, modeldeployment
from edgefleet.core import canary, conditions, revisions, windows

ANNOTATION_PROMOTE = "edgefleet.io/promote"
ANNOTATION_ABORT = "edgefleet.io/abort"
ANNOTATION_PAUSED = "edgefleet.io/paused"

POLL_SECONDS = 10.0
"""How soon to look again while waiting for devices (their status changes do not wake the deployment up)."""
MAX_NAMES = 8
"""Device names quoted in one message."""

EventType = Literal["Normal", "Warning"]


@dataclasses.dataclass(frozen=True)
class Event:
    """A Kubernetes event to record on the ModelDeployment."""

    type: EventType
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class DeviceChange:
    """Replace the entries this deployment owns on ``device`` by ``desired`` (None removes them)."""

    device: str
    desired: edgedevice.DesiredModel | None


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the operator must do; see :func:`plan`."""

    status: modeldeployment.ModelDeploymentStatus
    desired: Mapping[str, edgedevice.DesiredModel | None]
    changes: tuple[DeviceChange, ...]
    events: tuple[Event, ...]
    requeue_after: float | None
    stable: revisions.RevisionTemplate | None
    """The template of ``status.stableRevision`` after this plan (the operator keeps it)."""


def owned_entries(device: edgedevice.EdgeDevice, deployment: str) -> list[edgedevice.DesiredModel]:
    """The ``spec.models`` entries ``deployment`` owns on ``device`` (pure)."""
    return [m for m in device.spec.models if m.deployment == deployment]


def apply_change(
    device: edgedevice.EdgeDevice, deployment: str, desired: edgedevice.DesiredModel | None
) -> edgedevice.EdgeDevice:
    """``device`` with the entries of ``deployment`` replaced by ``desired`` (pure); other entries keep their order."""
    models = [m for m in device.spec.models if m.deployment != deployment]
    if desired is not None:
        models = [m for m in models if m.name != desired.name] + [desired]
    return device.model_copy(update={"spec": edgedevice.EdgeDeviceSpec(models=models)})


def removal(md: modeldeployment.ModelDeployment, devices: Sequence[edgedevice.EdgeDevice]) -> list[DeviceChange]:
    """The changes that remove ``md``'s models from every device, for deletion (pure)."""
    return [DeviceChange(d.metadata.name, None) for d in devices if owned_entries(d, md.metadata.name)]


def resolve_max_unavailable(value: int | str, total: int) -> int:
    """``maxUnavailable`` as a device count: percentages round down, and the result is at least 1 (pure).

    Devices have no surge capacity, so 0 would mean no device can ever switch; 1 keeps rollouts possible on small fleets
    (25 % of 3 devices).

    >>> [resolve_max_unavailable(v, 20) for v in (3, "25%", "1%", 0)]
    [3, 5, 1, 1]
    """
    count = total * int(value[:-1]) // 100 if isinstance(value, str) else value
    return max(1, count)


def describe_step(step: modeldeployment.RolloutStep) -> str:
    """Short human form of a step (pure).

    >>> describe_step(modeldeployment.RolloutStep(set_weight=10))
    'setWeight 10%'
    """
    if step.set_weight is not None:
        return f"setWeight {step.set_weight}%"
    if step.pause is not None:
        if step.pause.duration_seconds is None:
            return "pause until promoted"
        return f"pause {step.pause.duration_seconds}s"
    assert step.analysis is not None
    return f"analysis {step.analysis.duration_seconds}s, {step.analysis.min_samples} samples"


def stale_after(health: modeldeployment.HealthSpec) -> dt.timedelta:
    """How old a health verdict may be and still count: three evaluation windows, at least 2 min (pure).

    A device that stopped reporting keeps its last verdict in status; past this age it counts as silent, so a canary
    that went dark cannot pass an analysis on an old "Healthy".

    >>> stale_after(modeldeployment.HealthSpec(window_seconds=60))
    datetime.timedelta(seconds=180)
    """
    return dt.timedelta(seconds=max(3 * health.window_seconds, 120))


def _fresh(report: edgedevice.ModelStatus | None, now: dt.datetime, limit: dt.timedelta) -> bool:
    health = report.health if report is not None else None
    if health is None or health.evaluated_at is None:
        return True  # nothing dated to judge; a missing verdict is handled as silence elsewhere
    return now - health.evaluated_at <= limit


def _names(names: Iterable[str]) -> str:
    items = sorted(names)
    shown = ", ".join(items[:MAX_NAMES])
    return shown + (f" and {len(items) - MAX_NAMES} more" if len(items) > MAX_NAMES else "")


@dataclasses.dataclass
class _Device:
    """Working state of one device during planning."""

    name: str
    labels: dict[str, str]
    targeted: bool
    foreign: bool
    entry: edgedevice.DesiredModel | None
    original: edgedevice.DesiredModel | None
    report: edgedevice.ModelStatus | None
    dirty: bool
    fresh: bool
    """The health verdict is recent enough to count (see :func:`stale_after`)."""

    @property
    def active(self) -> str | None:
        return self.report.active_revision if self.report is not None else None

    def unavailable(self, entry: edgedevice.DesiredModel | None) -> bool:
        return entry is not None and self.active != entry.revision

    def converged_on(self, revision: str) -> bool:
        return self.entry is not None and self.entry.revision == revision and self.active == revision

    def failed_on(self, revision: str) -> bool:
        """The device reports that ``revision`` failed: it failed to install or rolled itself back, or it runs it and
        judges it unhealthy. ``desiredDigest`` ties a Failed/RolledBack state to this revision's artifact, so a failure
        of an earlier revision is not held against this one."""
        report = self.report
        if report is None or self.entry is None or self.entry.revision != revision:
            return False
        if report.active_revision == revision:
            return report.health is not None and report.health.verdict == "Unhealthy"
        return report.state in ("Failed", "RolledBack") and report.desired_digest == self.entry.artifact.digest

    def healthy_on(self, revision: str) -> bool:
        health = self.report.health if self.report is not None else None
        return self.converged_on(revision) and self.fresh and health is not None and health.verdict == "Healthy"

    def samples_on(self, revision: str) -> int:
        health = self.report.health if self.report is not None else None
        return health.samples if self.converged_on(revision) and health is not None else 0

    def why_unhealthy(self) -> str:
        report = self.report
        if report is None:
            return self.name
        detail = (report.health.reason if report.health is not None else None) or report.message or report.state
        return f"{self.name} ({detail})" if detail else self.name


@dataclasses.dataclass(frozen=True)
class _Evidence:
    updated: int
    healthy: int
    failed: tuple[str, ...]
    silent: tuple[str, ...]
    samples: int

    def text(self, threshold: float) -> str:
        share = self.healthy / self.updated if self.updated else 1.0
        parts = [
            f"{self.healthy}/{self.updated} updated devices healthy ({share:.0%}, threshold {threshold:.0%})",
            f"{self.samples} samples",
        ]
        if self.failed:
            parts.append(f"failed: {_names(self.failed)}")
        if self.silent:
            parts.append(f"no verdict: {_names(self.silent)}")
        return "; ".join(parts)


class _Planner:
    """One planning pass. Holds the simulated device state so later decisions see earlier changes."""

    def __init__(
        self,
        md: modeldeployment.ModelDeployment,
        devices: Sequence[edgedevice.EdgeDevice],
        candidate: revisions.RevisionTemplate | None,
        stable: revisions.RevisionTemplate | None,
        now: dt.datetime,
    ) -> None:
        self.md = md
        self.spec = md.spec
        self.name = md.metadata.name
        self.now = now
        self.candidate = candidate
        self.stable = stable
        self.old = md.status or modeldeployment.ModelDeploymentStatus()
        annotations = md.metadata.annotations or {}
        self.promote_signal = annotations.get(ANNOTATION_PROMOTE, "")
        self.abort_signal = annotations.get(ANNOTATION_ABORT, "")
        self.held_reason = (
            "spec.paused is true"
            if self.spec.paused
            else (f"annotation {ANNOTATION_PAUSED} is true" if annotations.get(ANNOTATION_PAUSED) == "true" else "")
        )
        self.window_open = windows.is_open(self.spec.rollout.maintenance_windows, now)
        self.blocked_by_window = False
        self.events: list[Event] = []
        self.requeue: float | None = None
        self.devices = [self._device(d) for d in sorted(devices, key=lambda d: d.metadata.name)]
        self.targeted = [d for d in self.devices if d.targeted]
        limit = resolve_max_unavailable(self.spec.rollout.max_unavailable, len(self.targeted))
        self.budget = limit - sum(d.unavailable(d.entry) for d in self.targeted)
        # Rollout state, updated as the pass goes.
        self.stable_revision = self.old.stable_revision
        self.canary_revision = self.old.canary_revision
        self.aborted_revision = self.old.aborted_revision
        self.step = self.old.current_step_index
        self.started = self.old.step_started_at
        self.phase: modeldeployment.Phase = "Progressing"
        self.ready: tuple[Literal["True", "False", "Unknown"], conditions.Reason] = (
            "Unknown",
            conditions.Reason("Progressing"),
        )
        self.stalled: conditions.Reason | None = None
        self.message = ""

    def _device(self, device: edgedevice.EdgeDevice) -> _Device:
        labels = dict(device.metadata.labels or {})
        owned = owned_entries(device, self.name)
        foreign = any(m.name == self.spec.model.name and m.deployment != self.name for m in device.spec.models)
        entry = owned[0] if owned else None
        report_name = entry.name if entry is not None else self.spec.model.name
        statuses = device.status.models if device.status is not None else []
        report = next((s for s in statuses if s.name == report_name), None)
        return _Device(
            name=device.metadata.name,
            labels=labels,
            targeted=self.spec.selector.matches(labels) and not foreign,
            foreign=foreign,
            entry=entry,
            original=entry,
            report=report,
            # More than one owned entry (the model was renamed) always needs a rewrite.
            dirty=len(owned) > 1,
            fresh=_fresh(report, self.now, stale_after(self.spec.health)),
        )

    # -- device changes ----------------------------------------------------------------------------------

    def switch(self, device: _Device, desired: edgedevice.DesiredModel | None) -> bool:
        """Move ``device`` to ``desired`` if availability and maintenance windows allow; True when it is there."""
        if desired == device.entry:
            return True
        costly = device.targeted and device.unavailable(desired) and not device.unavailable(device.entry)
        if costly:
            if not self.window_open:
                self.blocked_by_window = True
                return False
            if self.budget <= 0:
                return False
            self.budget -= 1
        elif device.targeted and device.unavailable(device.entry) and not device.unavailable(desired):
            self.budget += 1  # the device becomes available: the budget is "limit minus unavailable devices"
        device.entry = desired
        return True

    def stable_entry(self, device: _Device) -> edgedevice.DesiredModel | None:
        return self.stable.desired_for(self.name, device.labels) if self.stable is not None else None

    def canary_entry(self, device: _Device) -> edgedevice.DesiredModel | None:
        assert self.candidate is not None
        return self.candidate.desired_for(self.name, device.labels)

    def release_untargeted(self) -> None:
        for device in self.devices:
            if not device.targeted and not device.foreign and device.entry is not None:
                self.switch(device, None)

    def converge_to_stable(self) -> None:
        """Every targeted device to the stable entry; free changes first so they never wait for budget."""
        proposals = [(d, self.stable_entry(d)) for d in self.targeted]
        proposals.sort(key=lambda p: (p[0].unavailable(p[1]) and not p[0].unavailable(p[0].entry), p[0].name))
        for device, desired in proposals:
            self.switch(device, desired)

    # -- evidence ----------------------------------------------------------------------------------------

    def updated(self) -> list[_Device]:
        revision = self.canary_revision
        return [d for d in self.targeted if d.entry is not None and d.entry.revision == revision]

    def evidence(self) -> _Evidence:
        assert self.canary_revision is not None
        revision = self.canary_revision
        updated = self.updated()
        failed = tuple(d.why_unhealthy() for d in updated if d.failed_on(revision))
        healthy = sum(d.healthy_on(revision) for d in updated)
        silent = tuple(d.name for d in updated if not d.failed_on(revision) and not d.healthy_on(revision))
        return _Evidence(len(updated), healthy, failed, silent, sum(d.samples_on(revision) for d in updated))

    def too_many_failures(self, evidence: _Evidence) -> bool:
        allowed = math.floor((1.0 - self.spec.rollout.success_threshold) * evidence.updated + 1e-9)
        return len(evidence.failed) > allowed

    # -- transitions -------------------------------------------------------------------------------------

    def emit(self, type_: EventType, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def wake_in(self, seconds: float) -> None:
        seconds = max(1.0, seconds)
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    def advance(self) -> None:
        assert self.step is not None
        steps = self.spec.rollout.steps
        self.emit(
            "Normal",
            "StepCompleted",
            f"Completed step {self.step + 1}/{len(steps)} ({describe_step(steps[self.step])}) of revision "
            f"{self.canary_revision}",
        )
        self.step += 1
        self.started = self.now

    def fail(self, cause: str, evidence: str, manual: bool = False) -> None:
        revision = self.canary_revision
        assert revision is not None
        where = ""
        if self.step is not None and self.step < len(self.spec.rollout.steps):
            where = f" at step {self.step + 1}/{len(self.spec.rollout.steps)}"
        message = f"Revision {revision} failed{where}: {cause}; {evidence}"
        if manual or self.spec.rollback.automatic:
            self.aborted_revision = revision
            self.canary_revision = None
            self.step = None
            self.started = None
            rolled = f"Rolled back to stable revision {self.stable_revision}: {message}"
            self.emit("Warning", "RolloutAborted", rolled)
            self.converge_to_stable()
            self.set_rolled_back(rolled)
            return
        if self.old.phase != "Degraded":
            self.emit("Warning", "RolloutFailed", message + "; automatic rollback is off, abort or change the spec")
        self.phase = "Degraded"
        self.ready = ("False", conditions.Reason("RolloutFailed", message))
        self.stalled = conditions.Reason("RolloutFailed", message)
        self.message = message

    def set_rolled_back(self, message: str) -> None:
        self.phase = "RolledBack"
        self.ready = ("False", conditions.Reason("RolledBack", message))
        self.stalled = conditions.Reason("RolledBack", message)
        self.message = message
        assert self.stable_revision is not None
        if not all(d.converged_on(self.stable_revision) for d in self.targeted if self.stable_entry(d) is not None):
            self.wait_for_devices()

    def promote(self) -> None:
        assert self.candidate is not None
        self.emit(
            "Normal",
            "Promoted",
            f"Promoted revision {self.canary_revision} to stable (was {self.stable_revision})",
        )
        self.stable_revision = self.canary_revision
        self.stable = self.candidate
        self.canary_revision = None
        self.step = None
        self.started = None

    # -- the rollout -------------------------------------------------------------------------------------

    def run(self) -> None:
        revision = revisions.revision_of(self.spec)
        if self.candidate is not None and self.candidate.revision != revision:
            raise ValueError(f"candidate template is for revision {self.candidate.revision}, spec is {revision}")
        if self.stable_revision is not None and (self.stable is None or self.stable.revision != self.stable_revision):
            raise ValueError(f"the template of stable revision {self.stable_revision} is needed to plan")
        self.release_untargeted()
        if self.aborted_revision is not None and self.aborted_revision != revision:
            self.aborted_revision = None  # the spec changed, so the aborted revision's ban is lifted
        if self.stable_revision is None:
            self.first_revision()
        elif revision == self.stable_revision:
            self.end_canary("the spec returned to the stable revision")
            self.steady()
        elif revision == self.aborted_revision:
            self.end_canary("the revision was aborted")
            self.rolled_back_steady()
        else:
            self.rollout(revision)

    def end_canary(self, why: str) -> None:
        if self.canary_revision is not None:
            self.emit("Normal", "Superseded", f"Stopped rollout of revision {self.canary_revision}: {why}")
            self.canary_revision = None
            self.step = None
            self.started = None

    def first_revision(self) -> None:
        if self.candidate is None:
            self.compiling()
            return
        self.stable_revision = self.candidate.revision
        self.stable = self.candidate
        self.emit(
            "Normal",
            "RolloutStarted",
            f"Installing first revision {self.stable_revision} on {len(self.targeted)} devices "
            "(no stable revision to canary against)",
        )
        self.steady()

    def compiling(self) -> None:
        self.phase = "Compiling"
        self.ready = (
            "Unknown",
            conditions.Reason("Compiling", f"Compiling revision {revisions.revision_of(self.spec)}"),
        )
        self.message = self.ready[1].message
        self.wake_in(POLL_SECONDS)
        if self.stable is not None and not self.held_reason:
            self.converge_to_stable()

    def steady(self) -> None:
        """No canary: every device on stable."""
        assert self.stable_revision is not None
        if self.held_reason:
            self.set_held()
        else:
            self.converge_to_stable()
        on_stable = [d for d in self.targeted if d.converged_on(self.stable_revision)]
        expected = [d for d in self.targeted if self.stable_entry(d) is not None]
        if len(on_stable) == len(expected) and all(d.entry == self.stable_entry(d) for d in self.targeted):
            self.phase = "Healthy"
            self.message = f"Revision {self.stable_revision} is active on {len(on_stable)} devices"
            self.ready = ("True", conditions.Reason("RolloutComplete", self.message))
        elif not self.held_reason:
            self.message = f"{len(on_stable)}/{len(expected)} devices run revision {self.stable_revision}"
            self.ready = ("Unknown", conditions.Reason("Progressing", self.message))
            self.wait_for_devices()

    def rolled_back_steady(self) -> None:
        previous = conditions.find(self.old.conditions, conditions.READY)
        if previous is not None and previous.reason == "RolledBack" and previous.message:
            message = previous.message
        else:
            message = f"Revision {self.aborted_revision} was rolled back; change the spec to roll out again"
        self.converge_to_stable()
        self.set_rolled_back(message)

    def wait_for_devices(self) -> None:
        if not self.window_open:
            opening = windows.next_opening(self.spec.rollout.maintenance_windows, self.now)
            if opening is not None:
                self.wake_in((opening - self.now).total_seconds())
                return
        self.wake_in(POLL_SECONDS)

    def set_held(self) -> None:
        self.phase = "Paused"
        self.message = f"Rollout is held: {self.held_reason}"
        self.ready = ("Unknown", conditions.Reason("Paused", self.message))

    def rollout(self, revision: str) -> None:
        if self.canary_revision != revision:
            self.end_canary(f"superseded by revision {revision}")
        if self.candidate is None:
            self.compiling()
            return
        if self.canary_revision != revision:
            self.canary_revision = revision
            self.step = 0
            self.started = self.now
            self.emit(
                "Normal",
                "RolloutStarted",
                f"Started rollout of revision {revision} over {len(self.targeted)} devices (stable is "
                f"{self.stable_revision})",
            )
        if self.abort_signal == revision:
            evidence = self.evidence().text(self.spec.rollout.success_threshold)
            self.fail(f"aborted by annotation {ANNOTATION_ABORT}", evidence, manual=True)
            return
        self.walk_steps()

    def walk_steps(self) -> None:
        steps = self.spec.rollout.steps
        assert self.step is not None and self.started is not None
        threshold = self.spec.rollout.success_threshold
        while True:
            evidence = self.evidence()
            if self.too_many_failures(evidence):
                self.fail("too many updated devices failed", evidence.text(threshold))
                return
            if self.step >= len(steps):
                self.promote()
                self.steady()
                return
            step = steps[self.step]
            promoted = self.promote_signal == f"{self.canary_revision}/{self.step}"
            if self.held_reason:
                self.set_held()
                self.started = self.now
                return
            if step.set_weight is not None:
                snapshot = ({d.name: d.entry for d in self.devices}, self.budget)
                done = self.set_weight(step.set_weight)
                if done:
                    self.advance()
                    continue
                if self.blocked_by_window:
                    self.started = self.now
                elif self.now >= self.started + dt.timedelta(seconds=self.spec.rollout.progress_deadline_seconds):
                    waiting = [d.name for d in self.updated() if not d.converged_on(self.canary_revision or "")]
                    # Undo this pass's moves towards the weight, so the rollback gets the whole budget.
                    for d in self.devices:
                        d.entry = snapshot[0][d.name]
                    self.budget = snapshot[1]
                    self.fail(
                        f"no progress for {self.spec.rollout.progress_deadline_seconds}s",
                        f"{len(waiting)} updated devices not converged: {_names(waiting)}",
                    )
                    return
                updated = self.updated()
                converged = sum(d.converged_on(self.canary_revision or "") for d in updated)
                self.progressing(f"waiting for the canary to be active ({converged}/{len(updated)} updated)")
                self.wait_for_devices()
                return
            if promoted:
                self.emit("Normal", "StepPromoted", f"Promoted past step {self.step + 1} by annotation")
                self.advance()
                continue
            if step.pause is not None:
                if step.pause.duration_seconds is None:
                    self.phase = "Paused"
                    self.message = (
                        f"Step {self.step + 1}/{len(steps)}: paused until promoted "
                        f"(edgefleet rollout promote {self.name})"
                    )
                    self.ready = ("Unknown", conditions.Reason("Paused", self.message))
                    return
                ends = self.started + dt.timedelta(seconds=step.pause.duration_seconds)
                if self.now >= ends:
                    self.advance()
                    continue
                self.progressing(f"pausing until {ends.isoformat()}")
                self.wake_in((ends - self.now).total_seconds())
                return
            assert step.analysis is not None
            verdict = self.analyse(step.analysis, evidence)
            if verdict == "success":
                self.advance()
                continue
            if verdict == "failure":
                return
            return

    def set_weight(self, weight: int) -> bool:
        """Move the canary towards ``weight`` percent; True when the step is complete."""
        assert self.canary_revision is not None and self.candidate is not None
        revision = self.canary_revision
        pool = [d for d in self.targeted if self.canary_entry(d) is not None]
        goal = canary.count_for_weight(weight, len(pool))
        # Salted with the deployment name, as `edgefleet plan` previews it.
        labels = {d.name: d.labels for d in pool}
        ranked = canary.order(labels, self.name)
        keepers = canary.line_keepers(labels, self.name) if weight < 100 else set()
        by_name = {d.name: d for d in pool}
        current = {d.name for d in pool if d.entry is not None and d.entry.revision == revision}
        if weight >= 100:
            wanted = list(ranked)
            capacity = len(pool)
        else:
            allowed = [name for name in ranked if name in current or name not in keepers]
            capacity = len(allowed)
            wanted = [n for n in allowed if n in current]
            for name in allowed:
                if len(wanted) >= goal:
                    break
                device = by_name[name]
                # Only a device that runs what it was asked to becomes a canary: a late joiner is installed
                # with stable first, and a device still switching is not interrupted.
                if name not in current and device.entry is not None and device.active == device.entry.revision:
                    wanted.append(name)
        wanted_set = set(wanted)
        # Devices outside the canary go (back) to stable first: late joiners, leftovers of superseded
        # revisions.
        others = [d for d in self.targeted if d.name not in wanted_set]
        others.sort(key=lambda d: (d.unavailable(self.stable_entry(d)) and not d.unavailable(d.entry), d.name))
        for device in others:
            self.switch(device, self.stable_entry(device))
        for name in wanted:
            if name not in current:
                self.switch(by_name[name], self.canary_entry(by_name[name]))
        on_canary = [d for d in pool if d.entry is not None and d.entry.revision == revision]
        return len(on_canary) >= min(goal, capacity) and all(d.converged_on(revision) for d in on_canary)

    def analyse(self, analysis: modeldeployment.AnalysisStep, evidence: _Evidence) -> str:
        assert self.started is not None
        threshold = self.spec.rollout.success_threshold
        window_end = self.started + dt.timedelta(seconds=analysis.duration_seconds)
        deadline = window_end + dt.timedelta(seconds=self.spec.rollout.progress_deadline_seconds)
        share = evidence.healthy / evidence.updated if evidence.updated else 1.0
        if self.now >= window_end and evidence.samples >= analysis.min_samples and share >= threshold:
            return "success"
        if evidence.updated == 0 and self.now >= window_end:
            return "success"  # nothing to judge: no device takes the canary at this weight
        if self.now >= deadline:
            self.fail(
                f"analysis did not succeed within {self.spec.rollout.progress_deadline_seconds}s after "
                f"its window (min {analysis.min_samples} samples); devices without a verdict count as failed",
                evidence.text(threshold),
            )
            return "failure"
        self.progressing(
            f"analysing: {evidence.healthy}/{evidence.updated} healthy, "
            f"{evidence.samples}/{analysis.min_samples} samples"
        )
        if self.now < window_end:
            self.wake_in(min(POLL_SECONDS, (window_end - self.now).total_seconds()))
        else:
            self.wake_in(POLL_SECONDS)
        return "waiting"

    def progressing(self, what: str) -> None:
        assert self.step is not None
        steps = self.spec.rollout.steps
        self.phase = "Progressing"
        self.message = (
            f"Step {self.step + 1}/{len(steps)} ({describe_step(steps[self.step])}) of revision "
            f"{self.canary_revision}: {what}"
        )
        if self.blocked_by_window:
            self.message += "; waiting for a maintenance window"
        self.ready = ("Unknown", conditions.Reason("Progressing", self.message))

    # -- output ------------------------------------------------------------------------------------------

    def result(self) -> Plan:
        generation = self.md.metadata.generation
        reconciling = None
        converging = any(d.entry is not None and not d.converged_on(d.entry.revision) for d in self.targeted)
        if self.phase in ("Progressing", "Compiling") or (self.phase == "RolledBack" and converging):
            reconciling = conditions.Reason(
                self.ready[1].reason if self.phase != "RolledBack" else "RollingBack", self.message
            )
        conds = conditions.kstatus(
            self.old.conditions,
            ready=self.ready[0],
            ready_reason=self.ready[1],
            reconciling=reconciling,
            stalled=self.stalled,
            generation=generation,
            now=self.now,
        )
        revision = self.canary_revision or self.stable_revision
        updated = [
            d for d in self.targeted if revision is not None and d.entry is not None and d.entry.revision == revision
        ]
        counts = modeldeployment.DeviceCounts(
            targeted=len(self.targeted),
            updated=len(updated),
            healthy=sum(d.healthy_on(revision) for d in updated) if revision else 0,
            failed=sum(d.failed_on(revision) for d in updated) if revision else 0,
        )
        status = self.old.model_copy(
            update={
                "observed_generation": generation,
                "conditions": conds,
                "phase": self.phase,
                "stable_revision": self.stable_revision,
                "canary_revision": self.canary_revision,
                "aborted_revision": self.aborted_revision,
                "current_step_index": self.step,
                "step_started_at": self.started,
                "devices": counts,
            }
        )
        changes = tuple(DeviceChange(d.name, d.entry) for d in self.devices if d.entry != d.original or d.dirty)
        desired = {d.name: d.entry for d in self.devices if not d.foreign}
        return Plan(status, desired, changes, tuple(self.events), self.requeue, self.stable)


def plan(
    md: modeldeployment.ModelDeployment,
    devices: Sequence[edgedevice.EdgeDevice],
    candidate: revisions.RevisionTemplate | None,
    stable: revisions.RevisionTemplate | None,
    now: dt.datetime,
) -> Plan:
    """Decide the next state of a rollout (pure; see the module docstring for the rules).

    ``devices`` are all EdgeDevices of the namespace; those outside ``spec.selector`` lose this deployment's entries.
    ``candidate`` is the compiled template of the current spec, None while it is compiling. ``stable`` is the template
    of ``status.stableRevision`` (required when that is set). ``now`` must be timezone-aware.
    """
    planner = _Planner(md, devices, candidate, stable, now)
    planner.run()
    return planner.result()


__all__ = [
    "ANNOTATION_ABORT",
    "ANNOTATION_PAUSED",
    "ANNOTATION_PROMOTE",
    "DeviceChange",
    "Event",
    "Plan",
    "apply_change",
    "describe_step",
    "owned_entries",
    "plan",
    "removal",
    "resolve_max_unavailable",
    "stale_after",
]
