"""``reconcile_model_deployment``: the one level-triggered reconcile every handler, trigger and the timer call.

One pass has one shape (STYLE rules 1, 2, 22):

1. **Observe** everything once: the deployment (read fresh from the API server), the templates of its stable and its
   current revision, every EdgeDevice of the namespace and their Leases (from the watch-backed caches) and the
   compile job of the current revision, if one ran (:mod:`edgefleet.operator.compilejobs`).
2. **Plan** once (:func:`decide`, pure): record a finished compile's outcome in the status memory (the published
   artifacts, or ``lastAttemptedRevision`` + ``compileFailure``), then let the rollout planner decide.
3. **Act**: write the devices' desired models, and start the compile the plan asks for (or find it running).
4. **Patch status once** on the way out, failures included (as Flux's controllers do): a ``TransientError`` leaves
   ``Reconciling=True`` with the reason and is retried; an ``InvalidSpecError`` (a missing stable template, a corrupt
   revision, an invalid object) sets ``Stalled=True`` and ``Ready=False``. ``observedGeneration`` is set when a pass
   completes: it is the generation the status describes.

A compile that fails as the spec's fault (``Reason.is_compile_failure``) is not an error of the pass: it is recorded
in ``status.compileFailure`` for that generation, the planner stalls the deployment on it, and the spec is not
compiled again until it changes. The reconcile never looks at which event woke it up; running it twice in a row
changes nothing the second time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pydantic

from edgefleet.adapters import fleet, kube, protocols
from edgefleet.api import edgedevice, modeldeployment
from edgefleet.core import conditions, errors, planner, revisions, writeback
from edgefleet.core.planner import reachability
from edgefleet.operator import compilation, compilejobs, metrics

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Deps:
    """What reconciling needs from the outside world."""

    api: protocols.KubeClient
    devices: fleet.Devices
    templates: fleet.Revisions
    compile_jobs: compilejobs.CompileJobs
    compile_stage: Callable[[], Awaitable[compilejobs.Stage]]
    """The compile stage; raises an EdgefleetError saying why there is none (e.g. the signing key is missing)."""
    clock: Callable[[], dt.datetime] = dataclasses.field(default=lambda: dt.datetime.now(dt.UTC))
    write_back: (
        Callable[
            [modeldeployment.ModelDeployment, modeldeployment.ModelDeploymentStatus, dt.datetime],
            Awaitable[modeldeployment.RollbackWriteBack],
        ]
        | None
    ) = None
    """Writes the revert of an automatic abort to the fleet's Git repository (None: not configured)."""


@dataclasses.dataclass(frozen=True)
class Observation:
    """Everything one pass reads, read once."""

    md: modeldeployment.ModelDeployment
    stable: revisions.RevisionTemplate | None
    candidate: revisions.RevisionTemplate | None
    devices: tuple[edgedevice.EdgeDevice, ...]
    contacts: Mapping[str, reachability.Contact] | None
    """The devices' Leases as the operator observed them (None: they could not be read)."""
    job: compilejobs.CompileJob | None
    """The compile job of the spec's revision, if one runs or ended without being recorded."""
    job_state: compilejobs.JobState | None


@dataclasses.dataclass(frozen=True)
class Decision:
    """What one pass does: the rollout plan, the status to write and the events of the pass."""

    plan: planner.RolloutPlan
    status: modeldeployment.ModelDeploymentStatus
    events: tuple[planner.Event, ...]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a reconcile did. ``error`` is the classified failure of a pass that failed (after its status patch); the
    caller reports it (an InvalidSpecError as a Warning event with its reason) and raises it."""

    status: modeldeployment.ModelDeploymentStatus | None
    events: tuple[planner.Event, ...] = ()
    requeue_after: float | None = None
    devices_written: int = 0
    error: errors.TransientError | errors.InvalidSpecError | None = None


def parse(body: Mapping[str, Any]) -> modeldeployment.ModelDeployment:
    """Validate a ModelDeployment body at the boundary; InvalidSpecError lists the first problems."""
    try:
        return modeldeployment.ModelDeployment.model_validate(dict(body))
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)[:5]
        )
        name = (body.get("metadata") or {}).get("name", "?")
        raise errors.InvalidSpecError(f"ModelDeployment {name} is invalid: {problems}", "InvalidSpec") from exc


def status_patch(
    old: modeldeployment.ModelDeploymentStatus | None, new: modeldeployment.ModelDeploymentStatus
) -> dict[str, Any]:
    """A JSON merge patch turning ``old`` into ``new``: fields that became unset are sent as null (pure)."""
    wire = new.to_wire()
    for key in old.to_wire() if old is not None else {}:
        wire.setdefault(key, None)
    return wire


def classify(error: errors.EdgefleetError) -> errors.TransientError | errors.InvalidSpecError:
    """A failure as the pass reports it: transient, or the object's fault (anything else the API refused)."""
    if isinstance(error, errors.TransientError | errors.InvalidSpecError):
        return error
    return errors.InvalidSpecError(str(error))


def failed_status(
    md: modeldeployment.ModelDeployment, error: errors.EdgefleetError, now: dt.datetime
) -> modeldeployment.ModelDeploymentStatus:
    """The status for a classified failure (pure): Stalled when the spec is invalid, else Reconciling."""
    old = md.status or modeldeployment.ModelDeploymentStatus()
    message = str(error)
    generation = md.metadata.generation
    if isinstance(error, errors.InvalidSpecError):
        cause = conditions.Cause(error.reason, message)
        conds = conditions.kstatus(
            old.conditions,
            ready="False",
            ready_reason=cause,
            reconciling=None,
            stalled=cause,
            generation=generation,
            now=now,
        )
        return old.model_copy(
            update={"conditions": conds, "phase": "Stalled", "last_error": message, "observed_generation": generation}
        )
    ready = conditions.find(old.conditions, conditions.READY)
    conds = conditions.set_condition(
        old.conditions, conditions.RECONCILING, "True", "RetryingAfterError", message, generation, now
    )
    if ready is None:
        conds = conditions.set_condition(
            conds, conditions.READY, "Unknown", "RetryingAfterError", message, generation, now
        )
    return old.model_copy(update={"conditions": conds, "last_error": message})


# -- observe ----------------------------------------------------------------------------------------------------


async def observe(md: modeldeployment.ModelDeployment, deps: Deps) -> Observation:
    """Read everything the pass needs, once."""
    namespace, name = md.metadata.namespace or "default", md.metadata.name
    status = md.status or modeldeployment.ModelDeploymentStatus()
    revision = revisions.revision_of(md.spec)
    stable = None
    if status.stable_revision is not None:
        stable = await deps.templates.get(namespace, name, status.stable_revision)
        if stable is None:
            raise errors.InvalidSpecError(
                f"the template of stable revision {status.stable_revision} is missing (ControllerRevision "
                f"{fleet.Revisions.name(name, status.stable_revision)}); restore it or clear "
                "status.stableRevision",
                reason=errors.Reason.STABLE_REVISION_MISSING,
            )
    candidate = stable if stable is not None and stable.revision == revision else None
    if candidate is None:
        candidate = await deps.templates.get(namespace, name, revision)
    deps.compile_jobs.prune(namespace, name, keep=revision)
    job = deps.compile_jobs.find(compilejobs.JobKey(namespace, name, revision))
    devices = tuple(await deps.devices.devices(namespace))
    contacts = await deps.devices.contacts(namespace)
    return Observation(md, stable, candidate, devices, contacts, job, job.state() if job is not None else None)


# -- plan -------------------------------------------------------------------------------------------------------


def decide(seen: Observation, now: dt.datetime) -> Decision:
    """Record the outcome of a finished compile, then plan the rollout (pure).

    Raises the compile's error when it failed for a reason that is not the spec's (a crashed worker, an unreachable
    API server): the pass fails, and the next one compiles again.
    """
    md, revision = seen.md, revisions.revision_of(seen.md.spec)
    status = md.status or modeldeployment.ModelDeploymentStatus()
    candidate, events = seen.candidate, []
    state = seen.job_state
    if isinstance(state, compilejobs.Succeeded):
        published = state.published
        candidate = candidate or published.template
        status = status.model_copy(update={"artifacts": list(published.artifacts)})
        sizes = ", ".join(f"{a.target}: {a.precision} {a.size_bytes} bytes" for a in published.artifacts)
        events.append(
            planner.Event("Normal", "Compiled", f"Compiled revision {revision} in {published.seconds:.1f}s ({sizes})")
        )
    elif isinstance(state, compilejobs.Failed):
        error = state.error
        if not (isinstance(error, errors.InvalidSpecError) and error.reason.is_compile_failure):
            raise error
        assert seen.job is not None
        failure = modeldeployment.CompileFailure(
            generation=seen.job.generation or 0, reason=error.reason.value, message=str(error)
        )
        status = status.model_copy(update={"last_attempted_revision": revision, "compile_failure": failure})
        events.append(planner.Event("Warning", error.reason.value, str(error)))
    plan = planner.plan(
        md.model_copy(update={"status": status}), seen.devices, candidate, seen.stable, now, seen.contacts
    )
    stalled_on = plan.status.compile_failure  # kept by the planner only while it stalls this spec
    final = plan.status.model_copy(
        update={
            "observed_generation": md.metadata.generation,
            "last_error": stalled_on.message if stalled_on is not None else None,
        }
    )
    return Decision(plan, final, (*events, *plan.events))


# -- act --------------------------------------------------------------------------------------------------------


async def act(seen: Observation, decision: Decision, deps: Deps) -> int:
    """Write the devices' desired models and start the compile the plan asks for; returns the devices written."""
    md = seen.md
    namespace = md.metadata.namespace or "default"
    written = await deps.devices.apply(namespace, md.metadata.name, decision.plan.changes, seen.devices)
    revision = decision.plan.compile
    if revision is not None:
        key = compilejobs.JobKey(namespace, md.metadata.name, revision)
        job = deps.compile_jobs.find(key)
        if job is None or job.task.done():
            try:
                stage = await deps.compile_stage()
            except errors.EdgefleetError as exc:
                raise errors.TransientError(f"cannot compile revision {revision}: {exc}", delay=10.0) from exc
            deps.compile_jobs.start(key, md.metadata.generation, lambda: _compile(stage, deps.templates, md))
    return written


async def _compile(
    stage: compilejobs.Stage, templates: fleet.Revisions, md: modeldeployment.ModelDeployment
) -> compilation.Published:
    """The work of a compile job: compile, publish, and store the template the next pass observes."""
    published = await stage.compile(md.spec, owner=(md.metadata.namespace or "default", md.metadata.name))
    metrics.COMPILE_SECONDS.observe(published.seconds)
    await templates.put(md, published.template)
    return published


# -- the pass ---------------------------------------------------------------------------------------------------


async def reconcile_model_deployment(body: Mapping[str, Any], deps: Deps) -> Outcome:
    """Converge one ModelDeployment: observe, plan, act, patch status once (see the module docstring).

    ``body`` only names the object: the handler's copy can predate this operator's own last status write (a timer queued
    behind a change handler), so the current object is read from the API server. Failures come back classified in
    :attr:`Outcome.error`, after the status patch; a failure to read the object itself is raised.
    """
    meta = body.get("metadata") or {}
    try:
        fresh = await deps.api.get(kube.MODELDEPLOYMENTS, meta.get("namespace"), str(meta.get("name")))
    except errors.NotFoundError:
        return Outcome(None)
    try:
        md = parse(fresh)
    except errors.InvalidSpecError as exc:
        return Outcome(None, error=exc)  # nothing typed to write a status from
    if md.metadata.deletion_timestamp is not None:
        return Outcome(md.status)
    now = deps.clock()
    seen: Observation | None = None
    error: errors.TransientError | errors.InvalidSpecError | None = None
    try:
        seen = await observe(md, deps)
        decision = decide(seen, now)
        written = await act(seen, decision, deps)
        final, events = await _write_back(md, decision, deps, now)
        outcome = Outcome(final, events, decision.plan.requeue_after, written)
    except errors.EdgefleetError as exc:
        error = classify(exc)
        outcome = Outcome(failed_status(md, error, now), error=error)
    assert outcome.status is not None
    try:
        await _write_status(deps, md, outcome.status)  # the one status patch, failures included
    except errors.EdgefleetError as write_error:
        if error is None:
            raise
        log.warning("Failed to write status error=%s", write_error)  # report the pass's own failure
        return outcome
    if seen is not None and seen.job is not None and _recorded(seen.job_state, error):
        deps.compile_jobs.release(seen.job)
    return outcome


async def _write_back(
    md: modeldeployment.ModelDeployment, decision: Decision, deps: Deps, now: dt.datetime
) -> tuple[modeldeployment.ModelDeploymentStatus, tuple[planner.Event, ...]]:
    """After an automatic abort, write the revert to Git once (:mod:`edgefleet.core.writeback`) and remember it."""
    status = decision.status
    if deps.write_back is None or not writeback.due(md, status, now):
        return status, decision.events
    record = await deps.write_back(md, status, now)
    if record.outcome == "Failed":
        event = planner.Event("Warning", "WriteBackFailed", record.message)
    else:
        event = planner.Event("Normal", "RollbackWrittenBack", record.message)
    return status.model_copy(update={"rollback_write_back": record}), (*decision.events, event)


def _recorded(state: compilejobs.JobState | None, error: errors.EdgefleetError | None) -> bool:
    """The status just written reports the outcome of the observed job: a completed pass recorded its success or its
    compile failure; a failed pass reported its error if that was the job's (the next pass then compiles again)."""
    if isinstance(state, compilejobs.Succeeded):
        return error is None
    if isinstance(state, compilejobs.Failed):
        return error is None or state.error is error
    return False


async def _write_status(
    deps: Deps, md: modeldeployment.ModelDeployment, status: modeldeployment.ModelDeploymentStatus
) -> None:
    """The one status patch of a pass (none when nothing changed)."""
    if status == md.status:
        return
    await deps.api.merge_patch(
        kube.MODELDEPLOYMENTS,
        md.metadata.namespace,
        md.metadata.name,
        {"status": status_patch(md.status, status)},
        subresource="status",
    )


async def remove_from_devices(body: Mapping[str, Any], deps: Deps) -> int:
    """On deletion: remove this deployment's models from every device; returns how many devices changed."""
    md = parse(body)
    namespace = md.metadata.namespace or "default"
    devices = await deps.devices.devices(namespace)
    changes = planner.removal(md, devices)
    return await deps.devices.apply(namespace, md.metadata.name, changes, devices)


__all__ = [
    "Decision",
    "Deps",
    "Observation",
    "Outcome",
    "act",
    "classify",
    "decide",
    "failed_status",
    "observe",
    "parse",
    "reconcile_model_deployment",
    "remove_from_devices",
    "status_patch",
]
