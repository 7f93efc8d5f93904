"""``reconcile_model_deployment``: the one level-triggered reconcile every handler and the timer call.

It reads everything it needs (the deployment, its revision templates, every EdgeDevice of the namespace), compiles the
spec when no template exists for its revision yet, lets the pure planner decide, writes the devices' desired models and
the status, and returns what happened so the handler can emit events and logs. It never looks at which event woke it up;
running it twice in a row changes nothing the second time.

Failures are classified once: ``TransientError`` (API server, network, compile worker) leaves ``Reconciling=True`` with
the reason and is retried; ``InvalidSpecError`` (failed accuracy gate, unfetchable model, missing signing key) sets
``Stalled=True`` and ``Ready=False`` with the message, and is not retried until the spec changes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import pydantic

from edgefleet.adapters import fleet, kube, protocols
from edgefleet.api import modeldeployment
from edgefleet.core import conditions, errors, planner, revisions
from edgefleet.operator import compilation, metrics

COMPILE_FAILURE_REASONS = {
    "AccuracyGateFailed",
    "AccuracyBudgetUnreachable",
    "InvalidInput",
    "CompilerError",
    "SourceDigestMismatch",
    "SourceMissing",
    "SourceScheme",
    "SourceTooLarge",
    "InvalidModel",
    "UnsupportedModel",
}


@dataclasses.dataclass
class Deps:
    """What reconciling needs from the outside world."""

    api: protocols.KubeClient
    devices: fleet.Devices
    templates: fleet.Revisions
    compiler: compilation.CompileStage | None
    compiler_missing: str = "the compile stage is not ready"
    """Why ``compiler`` is None (e.g. the signing key Secret is missing), shown in the Reconciling condition."""
    clock: Callable[[], dt.datetime] = dataclasses.field(default=lambda: dt.datetime.now(dt.UTC))


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a reconcile did."""

    status: modeldeployment.ModelDeploymentStatus
    events: tuple[planner.Event, ...]
    requeue_after: float | None
    devices_written: int


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


async def write_status(
    deps: Deps, md: modeldeployment.ModelDeployment, status: modeldeployment.ModelDeploymentStatus
) -> None:
    if status == md.status:
        return
    await deps.api.merge_patch(
        kube.MODELDEPLOYMENTS,
        md.metadata.namespace,
        md.metadata.name,
        {"status": status_patch(md.status, status)},
        subresource="status",
    )


def failed_status(
    md: modeldeployment.ModelDeployment, error: errors.EdgefleetError, now: dt.datetime
) -> modeldeployment.ModelDeploymentStatus:
    """The status for a classified failure (pure): Stalled when the spec is invalid, else Reconciling."""
    old = md.status or modeldeployment.ModelDeploymentStatus()
    message = str(error)
    generation = md.metadata.generation
    if isinstance(error, errors.InvalidSpecError):
        conds = conditions.kstatus(
            old.conditions,
            ready="False",
            ready_reason=conditions.Reason(error.reason, message),
            reconciling=None,
            stalled=conditions.Reason(error.reason, message),
            generation=generation,
            now=now,
        )
        return old.model_copy(
            update={
                "conditions": conds,
                "phase": "Stalled",
                "last_error": message,
                "observed_generation": generation,
            }
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


def _compile_failed_for_this_generation(md: modeldeployment.ModelDeployment) -> bool:
    stalled = conditions.find((md.status or modeldeployment.ModelDeploymentStatus()).conditions, conditions.STALLED)
    return (
        stalled is not None
        and stalled.reason in COMPILE_FAILURE_REASONS
        and stalled.observed_generation == md.metadata.generation
    )


async def reconcile_model_deployment(body: Mapping[str, Any], deps: Deps) -> Outcome:
    """Converge one ModelDeployment (see the module docstring). Raises TransientError / InvalidSpecError.

    ``body`` only names the object: the handler's copy can predate this operator's own last status write (a timer queued
    behind a change handler), so the current object is read from the API server.
    """
    meta = body.get("metadata") or {}
    try:
        fresh = await deps.api.get(kube.MODELDEPLOYMENTS, meta.get("namespace"), str(meta.get("name")))
    except errors.NotFoundError:
        return Outcome(modeldeployment.ModelDeploymentStatus(), (), None, 0)
    md = parse(fresh)
    if md.metadata.deletion_timestamp is not None:
        return Outcome(md.status or modeldeployment.ModelDeploymentStatus(), (), None, 0)
    namespace = md.metadata.namespace or "default"
    name = md.metadata.name
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
                reason="StableRevisionMissing",
            )
    candidate = stable if stable is not None and stable.revision == revision else None
    if candidate is None:
        candidate = await deps.templates.get(namespace, name, revision)
    events: list[planner.Event] = []
    written = 0
    if candidate is None:
        if _compile_failed_for_this_generation(md):
            # The gate's verdict for this spec stands; keep devices on stable and the Stalled message as is.
            devices = await deps.devices.devices(namespace)
            holding = planner.plan(md, devices, None, stable, deps.clock())
            written += await deps.devices.apply(namespace, name, holding.changes, devices)
            return Outcome(status, holding.events, None, written)
        if deps.compiler is None:
            raise errors.TransientError(f"cannot compile revision {revision}: {deps.compiler_missing}", delay=10.0)
        # Show Compiling, and stop a superseded canary, before the (long) compile starts.
        devices = await deps.devices.devices(namespace)
        before = planner.plan(md, devices, None, stable, deps.clock())
        written += await deps.devices.apply(namespace, name, before.changes, devices)
        await write_status(deps, md, before.status)
        md = md.model_copy(update={"status": before.status})
        events.extend(before.events)
        published = await deps.compiler.compile(md.spec)
        metrics.COMPILE_SECONDS.observe(published.seconds)
        await deps.templates.put(md, published.template)
        candidate = published.template
        md = md.model_copy(update={"status": before.status.model_copy(update={"artifacts": list(published.artifacts)})})
        sizes = ", ".join(f"{a.target}: {a.precision} {a.size_bytes} bytes" for a in published.artifacts)
        events.append(
            planner.Event("Normal", "Compiled", f"Compiled revision {revision} in {published.seconds:.1f}s ({sizes})")
        )
    devices = await deps.devices.devices(namespace)
    plan = planner.plan(md, devices, candidate, stable, deps.clock())
    # plan.stable needs no write: it is either the stored stable template or the candidate, stored above.
    written += await deps.devices.apply(namespace, name, plan.changes, devices)
    new_status = plan.status.model_copy(update={"last_error": None})
    await write_status(deps, md, new_status)
    events.extend(plan.events)
    return Outcome(new_status, tuple(events), plan.requeue_after, written)


async def remove_from_devices(body: Mapping[str, Any], deps: Deps) -> int:
    """On deletion: remove this deployment's models from every device; returns how many devices changed."""
    md = parse(body)
    namespace = md.metadata.namespace or "default"
    devices = await deps.devices.devices(namespace)
    changes = planner.removal(md, devices)
    return await deps.devices.apply(namespace, md.metadata.name, changes, devices)


__all__ = [
    "Deps",
    "Outcome",
    "failed_status",
    "parse",
    "reconcile_model_deployment",
    "remove_from_devices",
    "status_patch",
    "write_status",
]
