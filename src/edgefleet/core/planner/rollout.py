"""One planning pass: from the deployment, its devices and ``now`` to a :class:`RolloutPlan` (see the package docs).

The pass reads the rollout's memory from status (:class:`~edgefleet.core.planner.state.RolloutState`), picks the
branch that fits the spec's revision (first revision, steady on stable, rolled back, or a rollout), moves device
entries in the pass's ledger within the availability budget, and writes the memory back with the phase and the kstatus
conditions. It asks for a compile, rather than compiling: :attr:`RolloutPlan.compile` names the revision whose
template is missing, unless a failed compile of this generation of the spec is recorded (``status.compileFailure``),
which stalls the deployment instead of compiling again. Everything here is pure.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence

from edgefleet.api import edgedevice, modeldeployment
from edgefleet.core import conditions, revisions
from edgefleet.core.planner import analysis, availability, devices, prestage, reachability, state, steps


@dataclasses.dataclass(frozen=True)
class RolloutPlan:
    """What the operator must do after one planning pass; see :func:`plan`."""

    status: modeldeployment.ModelDeploymentStatus
    """The new status, apart from ``observedGeneration`` and ``lastError`` (the reconcile's to set)."""
    changes: tuple[devices.DeviceChange, ...]
    events: tuple[state.Event, ...]
    requeue_after: float | None
    stable: revisions.RevisionTemplate | None
    """The template of ``status.stableRevision`` after this plan (the operator keeps it)."""
    compile: str | None = None
    """The revision to compile: its template is missing and no failed compile of this spec is recorded."""


def plan(
    md: modeldeployment.ModelDeployment,
    observed: Sequence[edgedevice.EdgeDevice],
    candidate: revisions.RevisionTemplate | None,
    stable: revisions.RevisionTemplate | None,
    now: dt.datetime,
    contacts: Mapping[str, reachability.Contact] | None = None,
) -> RolloutPlan:
    """Decide the next state of a rollout (pure; see the package docstring for the rules).

    ``observed`` are all EdgeDevices of the namespace; those outside ``spec.selector`` lose this deployment's entries.
    ``candidate`` is the compiled template of the current spec, None while it is not compiled. ``stable`` is the
    template of ``status.stableRevision`` (required when that is set). ``now`` must be timezone-aware. ``contacts``
    are the devices' Leases as the operator observed them, by device name (a device without one is judged by whether
    it picks up its changes alone; see :mod:`~edgefleet.core.planner.reachability`).

    Worked example (the package's): 20 devices on 5 lines run the stable revision; the spec asks for a new one with
    steps ``[setWeight 10, analysis 60s/100 samples, setWeight 100]``. The first plan after compile starts the rollout
    and puts the canary on 2 devices of 2 different lines; planning again on the result changes nothing.

    >>> md, fleet, stable, candidate = _example_fleet(20, lines=5)
    >>> now = dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)
    >>> first = plan(md, fleet, candidate, stable, now)
    >>> [e.reason for e in first.events], first.status.phase, first.status.current_step_index
    (['RolloutStarted'], 'Progressing', 0)
    >>> canaries = {c.device for c in first.changes}
    >>> len(canaries), len({d.metadata.labels["edgefleet.io/line"] for d in fleet if d.metadata.name in canaries})
    (2, 2)
    >>> fleet = [devices.apply_change(d, "weld", c.desired) for d in fleet for c in first.changes
    ...          if c.device == d.metadata.name] + [d for d in fleet if d.metadata.name not in canaries]
    >>> again = plan(md.model_copy(update={"status": first.status}), fleet, candidate, stable, now)
    >>> again.changes, again.events, again.status == first.status
    ((), (), True)
    """
    revision = revisions.revision_of(md.spec)
    old = md.status or modeldeployment.ModelDeploymentStatus()
    if candidate is not None and candidate.revision != revision:
        raise ValueError(f"candidate template is for revision {candidate.revision}, spec is {revision}")
    if old.stable_revision is not None and (stable is None or stable.revision != old.stable_revision):
        raise ValueError(f"the template of stable revision {old.stable_revision} is needed to plan")
    run = state.PlanningPass.of(md, observed, candidate, stable, now, contacts)
    run.ledger.release_untargeted(run.views)
    memory = _remembered(state.RolloutState.of(old), revision, md.metadata.generation, candidate)
    if memory.aborted_revision == revision and run.signals.retries(revision, memory.last_retry):
        memory = dataclasses.replace(memory, aborted_revision=None, rollout_failure=None, last_retry=run.signals.retry)
        run.emit(
            "Normal", "RolloutRetried", f"Retrying aborted revision {revision} (annotation {state.ANNOTATION_RETRY})"
        )
    announced = old.rollout_failure
    if memory.stable_revision is None:
        memory, summary = _first_revision(run, memory, revision)
    elif revision == memory.stable_revision:
        memory = _end_canary(run, memory, "the spec returned to the stable revision")
        summary = _steady(run, memory)
    elif revision == memory.aborted_revision:
        memory = _end_canary(run, memory, "the revision was aborted")
        summary = _rolled_back_steady(run, memory)
    else:
        memory, summary = _rollout(run, memory, revision, announced)
    prestage.apply(run, memory)  # last: it only adds or clears the download ahead of entries the pass decided
    return _result(run, md, old, memory, summary, compile_=revision if summary.phase == "Compiling" else None)


def _remembered(
    memory: state.RolloutState, revision: str, generation: int | None, candidate: revisions.RevisionTemplate | None
) -> state.RolloutState:
    """What of the memory still applies to this spec: bans and failures of other revisions or generations lapse."""
    aborted = memory.aborted_revision if memory.aborted_revision == revision else None  # a new spec lifts the ban
    failure = memory.rollout_failure
    kept_failure = failure if failure is not None and aborted is not None and failure.revision == aborted else None
    compiled = memory.compile_failure
    applies = compiled is not None and candidate is None and memory.last_attempted_revision == revision
    kept_compile = compiled if applies and compiled is not None and compiled.generation == generation else None
    return dataclasses.replace(
        memory, aborted_revision=aborted, rollout_failure=kept_failure, compile_failure=kept_compile
    )


# -- branches ---------------------------------------------------------------------------------------------------


def _first_revision(
    run: state.PlanningPass, memory: state.RolloutState, revision: str
) -> tuple[state.RolloutState, state.RolloutSummary]:
    """Without a stable revision there is nothing to canary against: the first one becomes stable at once."""
    if run.candidate is None:
        return _compiling(run, memory, revision)
    memory = dataclasses.replace(memory, stable_revision=run.candidate.revision)
    run.emit(
        "Normal",
        "RolloutStarted",
        f"Installing first revision {memory.stable_revision} on {len(run.targeted)} devices "
        "(no stable revision to canary against)",
    )
    return memory, _steady(run, memory)


def _compiling(
    run: state.PlanningPass, memory: state.RolloutState, revision: str
) -> tuple[state.RolloutState, state.RolloutSummary]:
    """The spec's template is missing: ask for the compile, or stall on the recorded failure of this spec."""
    if run.template(memory.stable_revision) is not None and not run.signals.held:
        _converge_to_stable(run, memory)
    failure = memory.compile_failure
    if failure is not None:
        return memory, state.RolloutSummary.stalled_by("Stalled", failure.reason, failure.message)
    memory = dataclasses.replace(memory, last_attempted_revision=revision)
    summary = state.RolloutSummary.unknown(
        "Compiling", "Compiling", f"Compiling revision {revision}", analysis.POLL_SECONDS
    )
    return memory, summary


def _steady(run: state.PlanningPass, memory: state.RolloutState) -> state.RolloutSummary:
    """No canary: every device on stable (every reachable one; unreachable ones get it when they return)."""
    stable = memory.stable_revision
    assert stable is not None
    if not run.signals.held:
        _converge_to_stable(run, memory)
    lost = [name for name, _ in run.unreachable_after()]
    reachable = [d for d in run.targeted if d.name not in lost]
    on_stable = [d for d in reachable if run.ledger.converged(d, stable)]
    expected = [d for d in reachable if run.entry_for(stable, d) is not None]
    if len(on_stable) == len(expected) and all(
        availability.same(run.ledger.entry(d), run.entry_for(stable, d)) for d in reachable
    ):
        message = f"Revision {stable} is active on {len(on_stable)} devices"
        if lost:
            message += f"; {len(lost)} unreachable get it when they return: {devices.names(lost)}"
        return state.RolloutSummary("Healthy", "True", conditions.Cause("RolloutComplete", message))
    if run.signals.held:
        return run.held()
    message = f"{len(on_stable)}/{len(expected)} devices run revision {stable}"
    if lost:
        message += f"; {len(lost)} unreachable"
    return state.RolloutSummary.unknown("Progressing", "Progressing", message, run.device_wait())


def _rolled_back_steady(run: state.PlanningPass, memory: state.RolloutState) -> state.RolloutSummary:
    """The spec still asks for the aborted revision: devices stay on stable, with the evidence of the abort."""
    failure = memory.rollout_failure
    if failure is not None and failure.message:
        message = failure.message
    else:
        message = f"Revision {memory.aborted_revision} was rolled back; change the spec to roll out again"
    _converge_to_stable(run, memory)
    return _rolled_back(run, memory, message)


def _rollout(
    run: state.PlanningPass,
    memory: state.RolloutState,
    revision: str,
    announced: modeldeployment.RolloutFailure | None,
) -> tuple[state.RolloutState, state.RolloutSummary]:
    """Roll ``revision`` out over the steps, starting the rollout if it is new."""
    if memory.canary_revision != revision:
        memory = _end_canary(run, memory, f"superseded by revision {revision}")
    if run.candidate is None:
        return _compiling(run, memory, revision)
    if memory.canary_revision != revision:
        memory = dataclasses.replace(memory, canary_revision=revision, step=0, started=run.now)
        run.emit(
            "Normal",
            "RolloutStarted",
            f"Started rollout of revision {revision} over {len(run.targeted)} devices (stable is "
            f"{memory.stable_revision})",
        )
    if run.signals.aborts(revision):
        evidence = analysis.gather(run.ledger, run.targeted, revision).text(run.spec.rollout.success_threshold)
        return _fail(run, memory, f"aborted by annotation {state.ANNOTATION_ABORT}", evidence, announced, manual=True)
    walked = steps.walk(run, memory)
    if isinstance(walked, steps.StepsHalted):
        return _fail(run, walked.rollout, walked.cause, walked.evidence, announced)
    if isinstance(walked, steps.StepsCompleted):
        memory = _promote(run, walked.rollout)
        return memory, _steady(run, memory)
    return walked.rollout, walked.summary


# -- transitions ------------------------------------------------------------------------------------------------


def _end_canary(run: state.PlanningPass, memory: state.RolloutState, why: str) -> state.RolloutState:
    if memory.canary_revision is None:
        return memory
    run.emit("Normal", "Superseded", f"Stopped rollout of revision {memory.canary_revision}: {why}")
    return memory.without_canary()


def _promote(run: state.PlanningPass, memory: state.RolloutState) -> state.RolloutState:
    run.emit(
        "Normal",
        "Promoted",
        f"Promoted revision {memory.canary_revision} to stable (was {memory.stable_revision})",
    )
    return dataclasses.replace(memory, stable_revision=memory.canary_revision).without_canary()


def _fail(
    run: state.PlanningPass,
    memory: state.RolloutState,
    cause: str,
    evidence: str,
    announced: modeldeployment.RolloutFailure | None,
    manual: bool = False,
) -> tuple[state.RolloutState, state.RolloutSummary]:
    """The canary failed: roll back (automatic rollback, or an abort by hand), else degrade and wait for a person."""
    revision = memory.canary_revision
    assert revision is not None
    count = len(run.spec.rollout.steps)
    where = f" at step {memory.step + 1}/{count}" if memory.step is not None and memory.step < count else ""
    message = f"Revision {revision} failed{where}: {cause}; {evidence}"
    if manual or run.spec.rollback.automatic:
        rolled = f"Rolled back to stable revision {memory.stable_revision}: {message}"
        memory = dataclasses.replace(
            memory.without_canary(),
            aborted_revision=revision,
            rollout_failure=modeldeployment.RolloutFailure(revision=revision, message=rolled),
        )
        run.emit("Warning", "RolloutAborted", rolled)
        _converge_to_stable(run, memory)
        return memory, _rolled_back(run, memory, rolled)
    if announced is None or announced.revision != revision:
        run.emit("Warning", "RolloutFailed", message + "; automatic rollback is off, abort or change the spec")
    memory = dataclasses.replace(
        memory, rollout_failure=modeldeployment.RolloutFailure(revision=revision, message=message)
    )
    return memory, state.RolloutSummary.stalled_by("Degraded", "RolloutFailed", message)


def _rolled_back(run: state.PlanningPass, memory: state.RolloutState, message: str) -> state.RolloutSummary:
    stable = memory.stable_revision
    assert stable is not None
    pending = [
        d
        for d in run.targeted
        if d.reachable and run.entry_for(stable, d) is not None and not run.ledger.converged(d, stable)
    ]
    return state.RolloutSummary.stalled_by("RolledBack", "RolledBack", message, run.device_wait() if pending else None)


def _converge_to_stable(run: state.PlanningPass, memory: state.RolloutState) -> None:
    """Every targeted device to the stable entry; free changes first so they never wait for budget. Unreachable devices
    only take it if they run it (see :class:`~edgefleet.core.planner.availability.Ledger`)."""
    run.ledger.converge((d, run.entry_for(memory.stable_revision, d)) for d in run.targeted)


# -- output -----------------------------------------------------------------------------------------------------


def _result(
    run: state.PlanningPass,
    md: modeldeployment.ModelDeployment,
    old: modeldeployment.ModelDeploymentStatus,
    memory: state.RolloutState,
    summary: state.RolloutSummary,
    compile_: str | None,
) -> RolloutPlan:
    ledger = run.ledger
    ledger.refresh(run.targeted, {r for r in (memory.stable_revision, memory.canary_revision) if r is not None})
    converging = any(
        (e := ledger.entry(d)) is not None and d.reachable and not d.converged(e, e.revision) for d in run.targeted
    )
    reconciling = None
    stalled = summary.stalled
    if summary.phase in ("Progressing", "Compiling") or summary.cause.reason == state.HELD_UNREACHABLE:
        reconciling = conditions.Cause(summary.cause.reason, summary.message)
    elif summary.phase == "RolledBack" and converging:
        # Devices are still on their way back to stable: the operator is acting, so Reconciling; Stalled only once
        # nothing is left to do but wait for a person (kstatus reads Reconciling as InProgress and would hide a
        # Stalled set beside it; the conventions never want both).
        reconciling, stalled = conditions.Cause("RollingBack", summary.message), None
    conds = conditions.kstatus(
        old.conditions,
        ready=summary.ready,
        ready_reason=summary.cause,
        reconciling=reconciling,
        stalled=stalled,
        generation=md.metadata.generation,
        now=run.now,
    )
    lost = run.unreachable_after()
    reach = modeldeployment.Reachability(
        reachable=len(run.targeted) - len(lost),
        unreachable=len(lost),
        devices=[
            modeldeployment.UnreachableDevice(name=name, reason=why.reason or "LeaseExpired", since=why.since)
            for name, why in lost[: devices.MAX_LISTED]
        ],
        held_since=memory.hold.since,
        recovering_since=memory.hold.recovering_since,
    )
    status = old.model_copy(
        update={
            "conditions": conds,
            "phase": summary.phase,
            "devices": _counts(run, memory, revisions.revision_of(md.spec)),
            "reachability": reach,
            **memory.status_fields(),
        }
    )
    requeue = max(1.0, summary.wake_in) if summary.wake_in is not None else None
    return RolloutPlan(
        status=status,
        changes=ledger.changes(run.views),
        events=tuple(run.events),
        requeue_after=requeue,
        stable=run.template(memory.stable_revision),
        compile=compile_,
    )


def _counts(run: state.PlanningPass, memory: state.RolloutState, spec_revision: str) -> modeldeployment.DeviceCounts:
    """Device counts of the revision being rolled out: the canary while one runs, else the spec's revision.

    After an automatic abort the spec still names the aborted revision, so ``updated`` falls to 0 as devices return
    to stable, which ``stable`` then counts: the numbers say how far the fleet is from what Git asks for.
    """
    ledger = run.ledger
    revision = memory.canary_revision or spec_revision
    updated = ledger.on(revision, run.targeted)
    on_stable = ledger.on(memory.stable_revision, run.targeted) if memory.stable_revision is not None else []
    return modeldeployment.DeviceCounts(
        targeted=len(run.targeted),
        updated=len(updated),
        healthy=sum(d.healthy(ledger.entry(d), revision) for d in updated),
        failed=sum(d.failed(ledger.entry(d), revision) for d in updated),
        revision=revision,
        stable=len(on_stable),
        staged=prestage.staged(run, memory),
    )


def _example_fleet(
    n: int, lines: int
) -> tuple[
    modeldeployment.ModelDeployment,
    list[edgedevice.EdgeDevice],
    revisions.RevisionTemplate,
    revisions.RevisionTemplate,
]:
    """For the worked example above: ``n`` devices on ``lines`` lines, all running 1.0.0 (stable); the spec asks for
    2.0.0. Returns the deployment, the devices, the stable template and the candidate template."""

    def spec(version: str) -> modeldeployment.ModelDeploymentSpec:
        return modeldeployment.ModelDeploymentSpec.model_validate(
            {
                "model": {"name": "weld", "version": version, "uri": "https://models.example.com/weld.onnx",
                          "sha256": version[0] * 64, "task": "classification"},
                "compile": {"targets": [{"name": "x86", "evaluation": {
                    "uri": "https://models.example.com/eval.npz", "sha256": "c" * 64}}]},
                "selector": {},
                "rollout": {"steps": [{"setWeight": 10}, {"analysis": {"durationSeconds": 60, "minSamples": 100}},
                                      {"setWeight": 100}], "maxUnavailable": "25%"},
            }
        )  # fmt: skip

    def template(s: modeldeployment.ModelDeploymentSpec) -> revisions.RevisionTemplate:
        digest = "sha256:" + s.model.sha256
        artifact = edgedevice.ArtifactRef(
            uri=f"https://store.example/{digest}", digest=digest, size_bytes=1, precision="fp32"
        )
        return revisions.template_for(s, {"x86": artifact})

    stable, candidate = template(spec("1.0.0")), template(spec("2.0.0"))
    fleet = []
    for i in range(n):
        entry = stable.desired_for("weld", {})
        assert entry is not None
        assigned = dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC)
        validity = edgedevice.DesiredValidity(assigned_at=assigned, expires_at=assigned + dt.timedelta(hours=12))
        entry = entry.model_copy(update={"validity": validity})
        fleet.append(
            edgedevice.EdgeDevice.model_validate(
                {
                    "metadata": {"name": f"dev-{i:02d}", "labels": {"edgefleet.io/line": f"line-{i % lines}"}},
                    "spec": {"models": [entry.to_wire()]},
                    "status": {"models": [{"name": "weld", "state": "Active", "activeRevision": stable.revision}]},
                }
            )
        )
    md = modeldeployment.ModelDeployment.model_validate(
        {
            "metadata": {"name": "weld", "namespace": "plant", "generation": 2},
            "spec": spec("2.0.0").to_wire(),
            "status": {"stableRevision": stable.revision, "phase": "Healthy"},
        }
    )
    return md, fleet, stable, candidate


__all__ = ["RolloutPlan", "plan"]
