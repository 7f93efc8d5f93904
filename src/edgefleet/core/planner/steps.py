"""The rollout steps: how each kind of step moves the canary on, and the walk over ``spec.rollout.steps``.

* ``setWeight`` puts the canary on that share of the devices it can run on, in the order of
  :mod:`edgefleet.core.canary` (salted with the deployment name, as ``edgefleet plan`` previews it), and completes when
  all of them report it active. Below 100 % the last device of every line stays on stable. Only a device that runs
  what it was asked to becomes a canary: a late joiner is installed with stable first, a device still switching is
  not interrupted. It fails when ``progressDeadlineSeconds`` passed since it started or since a device was last given
  the canary, and a device that works on the change has not finished it. Only reachable devices fill the share
  (:mod:`edgefleet.core.planner.reachability`).
* ``pause`` completes after ``durationSeconds``, or without it when a promote annotation names this revision and step.
* ``analysis`` completes when :func:`edgefleet.core.planner.analysis.judge` says it passed; a promote annotation
  completes it too.

:func:`walk` takes a rollout from its current step as far as it can go in one pass, and returns where it stopped as a
typed result: :class:`StepsCompleted` (promote the canary), :class:`StepsHalted` (fail the rollout) or
:class:`StepsWaiting`. Steps never emit failures themselves; the caller decides between rolling back and degrading.
While the rollout is held or a switch waits for a maintenance window the step clock restarts, so deadlines measure
time in which progress was possible. Everything here is pure, apart from the pass's ledger and events.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from edgefleet.api import modeldeployment
from edgefleet.core import canary
from edgefleet.core.planner import analysis, devices, reachability, state


def describe_step(step: modeldeployment.RolloutStep) -> str:
    """Short human form of a step (pure).

    >>> describe_step(modeldeployment.RolloutStep(set_weight=10))
    'setWeight 10%'
    >>> describe_step(modeldeployment.RolloutStep(pause=modeldeployment.PauseStep()))
    'pause until promoted'
    """
    if step.set_weight is not None:
        return f"setWeight {step.set_weight}%"
    if step.pause is not None:
        if step.pause.duration_seconds is None:
            return "pause until promoted"
        return f"pause {step.pause.duration_seconds}s"
    assert step.analysis is not None
    return f"analysis {step.analysis.duration_seconds}s, {step.analysis.min_samples} samples"


# -- where the walk stops ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StepsCompleted:
    """Every step is complete: the canary is ready to be promoted."""

    rollout: state.RolloutState


@dataclasses.dataclass(frozen=True)
class StepsHalted:
    """The rollout failed at its current step."""

    rollout: state.RolloutState
    cause: str
    evidence: str


@dataclasses.dataclass(frozen=True)
class StepsWaiting:
    """The current step is not complete yet."""

    rollout: state.RolloutState
    summary: state.RolloutSummary


WalkResult = StepsCompleted | StepsHalted | StepsWaiting


# -- one step ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Advance:
    events: tuple[state.Event, ...] = ()


@dataclasses.dataclass(frozen=True)
class _Wait:
    summary: state.RolloutSummary
    restart_clock: bool = False


@dataclasses.dataclass(frozen=True)
class _Fail:
    cause: str
    evidence: str


_StepOutcome = _Advance | _Wait | _Fail


def walk(run: state.PlanningPass, rollout: state.RolloutState) -> WalkResult:
    """Walk the steps of the canary in ``rollout`` from its current step as far as this pass allows."""
    steps = run.spec.rollout.steps
    threshold = run.spec.rollout.success_threshold
    release(run, rollout)
    while True:
        assert rollout.canary_revision is not None and rollout.step is not None
        index = rollout.step
        evidence = analysis.gather(run.ledger, run.targeted, rollout.canary_revision)
        if analysis.too_many_failures(evidence, threshold):
            return StepsHalted(rollout, "too many updated devices failed", evidence.text(threshold))
        if index >= len(steps):
            return StepsCompleted(rollout)
        if run.signals.held:
            return StepsWaiting(dataclasses.replace(rollout, started=run.now), run.held())
        held = reachability.hold(len(run.unreachable), run.unreachable_limit(), rollout.hold, run.now)
        rollout = dataclasses.replace(rollout, hold=held)
        if held.held:
            return StepsWaiting(dataclasses.replace(rollout, started=run.now), run.outage(held))
        rollout = _promote_fully(run, rollout)
        assert rollout.step is not None
        outcome = _evaluate(run, rollout, steps[rollout.step], evidence)
        if isinstance(outcome, _Advance):
            run.events.extend(outcome.events)
            rollout = _advance(run, rollout)
        elif isinstance(outcome, _Fail):
            return StepsHalted(rollout, outcome.cause, outcome.evidence)
        else:
            return StepsWaiting(
                dataclasses.replace(rollout, started=run.now) if outcome.restart_clock else rollout, outcome.summary
            )


def release(run: state.PlanningPass, rollout: state.RolloutState) -> None:
    """Give every unreachable device that runs the stable revision but was asked for another one its stable entry
    back: it will not start that change by itself when it returns (it is a candidate again then, like any other
    device). Devices that did not pick up their entry keep it while the rollout moves forward."""
    stable = rollout.stable_revision
    run.ledger.converge(
        ((d, run.entry_for(stable, d)) for d in run.targeted if not d.reachable and d.active == stable),
        forward=True,
    )


def _last_weight(run: state.PlanningPass, step: int) -> int | None:
    """The weight of the last setWeight step before ``step`` (None: no canary yet)."""
    weights = [s.set_weight for s in run.spec.rollout.steps[:step] if s.set_weight is not None]
    return weights[-1] if weights else None


def _promote_fully(run: state.PlanningPass, rollout: state.RolloutState) -> state.RolloutState:
    """With the promote-full annotation naming the canary, jump to the last ``setWeight: 100`` step (once)."""
    assert rollout.canary_revision is not None and rollout.step is not None
    if not run.signals.promotes_fully(rollout.canary_revision):
        return rollout
    steps = run.spec.rollout.steps
    final = max(i for i, s in enumerate(steps) if s.set_weight == 100)
    if rollout.step >= final:
        return rollout
    run.emit(
        "Normal",
        "PromotedFully",
        f"Skipped steps {rollout.step + 1}-{final}/{len(steps)} of revision {rollout.canary_revision} by annotation "
        f"{state.ANNOTATION_PROMOTE_FULL}",
    )
    return dataclasses.replace(rollout, step=final, started=run.now)


def _evaluate(
    run: state.PlanningPass, rollout: state.RolloutState, step: modeldeployment.RolloutStep, evidence: analysis.Evidence
) -> _StepOutcome:
    assert rollout.canary_revision is not None and rollout.step is not None and rollout.started is not None
    if step.set_weight is not None:
        return _set_weight_step(run, rollout, step.set_weight)
    weight = _last_weight(run, rollout.step)
    if weight is not None:
        set_weight(run, rollout, weight)  # keep the share: a canary that became unreachable is replaced
        # ... and the replacement counts in this pass's evidence, as it will in the next (planning is idempotent)
        evidence = analysis.gather(run.ledger, run.targeted, rollout.canary_revision)
    if run.signals.promotes(rollout.canary_revision, rollout.step):
        return _Advance(
            (state.Event("Normal", "StepPromoted", f"Promoted past step {rollout.step + 1} by annotation"),)
        )
    if step.pause is not None:
        if step.pause.duration_seconds is None:
            message = (
                f"Step {rollout.step + 1}/{len(run.spec.rollout.steps)}: paused until promoted "
                f"(edgefleet rollout promote {run.deployment})"
            )
            return _Wait(state.RolloutSummary.unknown("Paused", "Paused", message))
        ends = rollout.started + dt.timedelta(seconds=step.pause.duration_seconds)
        if run.now >= ends:
            return _Advance()
        wake = (ends - run.now).total_seconds()
        return _Wait(_progressing(run, rollout, f"pausing until {ends.isoformat()}", wake))
    assert step.analysis is not None
    judgement = analysis.judge(step.analysis, run.spec.rollout, evidence, rollout.started, run.now)
    if judgement.verdict is analysis.AnalysisVerdict.PASSED:
        return _Advance()
    if judgement.verdict is analysis.AnalysisVerdict.FAILED:
        return _Fail(judgement.detail, evidence.text(run.spec.rollout.success_threshold))
    return _Wait(_progressing(run, rollout, judgement.detail, judgement.wake_in), restart_clock=judgement.restart_clock)


def _set_weight_step(run: state.PlanningPass, rollout: state.RolloutState, weight: int) -> _StepOutcome:
    """The step fails when ``progressDeadlineSeconds`` passed since it started or since the last device was given the
    canary (its clock restarts then) and a device that works on the change has not finished it. A device that has not
    reported anything for its entry yet is given its pickup timeout instead (then it is unreachable and replaced)."""
    assert rollout.canary_revision is not None and rollout.started is not None
    revision = rollout.canary_revision
    before = run.ledger.snapshot()
    had = {d.name for d in run.ledger.on(revision, run.targeted)}
    if set_weight(run, rollout, weight):
        return _Advance()
    assigned = any(d.name not in had for d in run.ledger.on(revision, run.targeted))
    blocked = run.ledger.blocked_by_window
    deadline = run.spec.rollout.progress_deadline_seconds
    updated = [d for d in run.ledger.on(revision, run.targeted) if d.reachable]
    waiting = [d for d in updated if not run.ledger.converged(d, revision)]
    working = [d for d in waiting if (e := run.ledger.entry(d)) is not None and reachability.picked_up(e, d.report)]
    passed = run.now >= rollout.started + dt.timedelta(seconds=deadline)
    if not blocked and not assigned and passed and (working or not waiting):
        names = [d.name for d in waiting]
        run.ledger.restore(before)  # undo this pass's moves towards the weight, so the rollback gets the whole budget
        evidence = f"{len(names)} updated devices not converged: {devices.names(names)}"
        return _Fail(f"no progress for {deadline}s", evidence)
    converged = len(updated) - len(waiting)
    what = f"waiting for the canary to be active ({converged}/{len(updated)} updated)"
    lost = len(run.unreachable)
    if lost:
        what += f"; {lost} unreachable"
    return _Wait(_progressing(run, rollout, what, run.device_wait()), restart_clock=blocked or assigned)


def set_weight(run: state.PlanningPass, rollout: state.RolloutState, weight: int) -> bool:
    """Move the canary towards ``weight`` percent of the devices it can run on; True when the step is complete.

    The share is counted over every device the canary can run on, and filled from reachable ones in canary order:
    a canary that became unreachable no longer counts, and the next reachable device in the order takes its place.
    Below 100 % a device becomes a canary only if it is not its line's keeper (:func:`canary.line_keepers`) and its
    line keeps another reachable device on stable; canaries that are reachable stay canaries.
    """
    assert rollout.canary_revision is not None and run.candidate is not None
    revision = rollout.canary_revision
    pool = [d for d in run.targeted if run.canary_entry(d) is not None]
    goal = canary.count_for_weight(weight, len(pool))
    labels = {d.name: d.labels for d in pool}
    ranked = canary.order(labels, run.deployment)
    by_name = {d.name: d for d in pool}
    current = {d.name for d in run.ledger.on(revision, pool) if d.reachable}
    waiting = False
    if weight >= 100:
        wanted = [name for name in ranked if by_name[name].reachable]
    else:
        keepers = canary.line_keepers(labels, run.deployment)
        # Leftovers of a superseded revision go back to stable before candidates are chosen, so a device released in
        # this pass is judged as the next pass would judge it (planning twice must equal planning once).
        stable = rollout.stable_revision
        run.ledger.converge(
            (
                (d, run.entry_for(stable, d))
                for d in run.targeted
                if d.name not in current
                and (e := run.ledger.entry(d)) is not None
                and e.revision not in (revision, stable)
            ),
            forward=True,
        )
        wanted = [name for name in ranked if name in current]
        on_stable: dict[tuple[str, str], int] = {}
        for d in pool:
            if d.reachable and d.name not in current:
                on_stable[canary.line_of(d.labels)] = on_stable.get(canary.line_of(d.labels), 0) + 1
        for name in ranked:
            if len(wanted) >= goal:
                break
            device = by_name[name]
            line = canary.line_of(device.labels)
            if name in current or name in keepers or not device.reachable or on_stable.get(line, 0) < 2:
                continue
            entry = run.ledger.entry(device)
            if entry is not None and device.active == entry.revision:
                wanted.append(name)
                on_stable[line] -= 1
            else:
                waiting = True  # it could take the canary once it runs what it was asked to
    wanted_set = set(wanted)
    # Devices outside the canary go (back) to stable first: late joiners, leftovers of superseded revisions.
    run.ledger.converge(
        ((d, run.entry_for(rollout.stable_revision, d)) for d in run.targeted if d.name not in wanted_set),
        forward=True,
    )
    for name in wanted:
        if name not in current:
            run.ledger.switch(by_name[name], run.canary_entry(by_name[name]))
    on_canary = [d for d in run.ledger.on(revision, pool) if d.reachable]
    # Complete at the share, or below it once no device can be added at this weight (100 %: every reachable device).
    switched = len(on_canary) >= len(wanted)
    enough = switched if weight >= 100 else len(on_canary) >= goal or (switched and not waiting)
    return enough and all(run.ledger.converged(d, revision) for d in on_canary)


def _advance(run: state.PlanningPass, rollout: state.RolloutState) -> state.RolloutState:
    assert rollout.step is not None
    steps = run.spec.rollout.steps
    run.emit(
        "Normal",
        "StepCompleted",
        f"Completed step {rollout.step + 1}/{len(steps)} ({describe_step(steps[rollout.step])}) of revision "
        f"{rollout.canary_revision}",
    )
    return dataclasses.replace(rollout, step=rollout.step + 1, started=run.now)


def _progressing(
    run: state.PlanningPass, rollout: state.RolloutState, what: str, wake_in: float | None
) -> state.RolloutSummary:
    assert rollout.step is not None
    steps = run.spec.rollout.steps
    message = (
        f"Step {rollout.step + 1}/{len(steps)} ({describe_step(steps[rollout.step])}) of revision "
        f"{rollout.canary_revision}: {what}"
    )
    if run.ledger.blocked_by_window:
        message += "; waiting for a maintenance window"
    return state.RolloutSummary.unknown("Progressing", "Progressing", message, wake_in)


__all__ = [
    "StepsCompleted",
    "StepsHalted",
    "StepsWaiting",
    "WalkResult",
    "describe_step",
    "release",
    "set_weight",
    "walk",
]
