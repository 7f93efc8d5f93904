"""A rollout as the dashboard shows it: a deployment's steps, revisions, conditions and events, and how its devices
converge over time (pure).

:func:`deployment` turns one ModelDeployment (and the Events about it) into plain data. :class:`History` keeps the
convergence series of one deployment: a :class:`Point` (how many of its devices are in each fleet-map state, the
current step and canary) whenever that changes, at most :attr:`History.limit` points; when full, every other point is
dropped (the newest is always kept), so a long rollout keeps its whole shape at a coarser grain.

Worked example: 50 devices, steps ``[setWeight 10, analysis, setWeight 100]``. The dashboard starts while step 0 is
out: the first point is ``stable 45, installing 5``; as the five canaries switch, points ``stable 45, installing 3,
canary 2`` ... ``canary 5``; at step 2 the canary count climbs to 50, then the canary becomes stable and the last
point reads ``stable 50``. The chart draws these as stacked areas with the step changes marked.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from edgefleet.api import modeldeployment
from edgefleet.core import conditions, fleetmap, planner

MAX_EVENTS = 30
"""Events kept and shown per deployment (the newest)."""


@dataclasses.dataclass(frozen=True)
class EventRecord:
    """One Kubernetes Event about a deployment."""

    type: str
    reason: str
    message: str
    time: dt.datetime | None
    count: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "reason": self.reason,
            "message": self.message,
            "time": _iso(self.time),
            "count": self.count,
        }


def _iso(t: dt.datetime | None) -> str | None:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if t is not None else None


def steps(md: modeldeployment.ModelDeployment) -> list[dict[str, Any]]:
    """Each rollout step with its description and whether it is done, current or pending (pure).

    While no canary is out every step reads ``done`` once a stable revision exists (nothing is rolling out).
    """
    status = md.status or modeldeployment.ModelDeploymentStatus()
    current = status.current_step_index if status.canary_revision else None
    out = []
    for i, step in enumerate(md.spec.rollout.steps):
        if current is None:
            state = "done" if status.stable_revision else "pending"
        else:
            state = "done" if i < current else "current" if i == current else "pending"
        out.append({"index": i, "description": planner.describe_step(step), "state": state})
    return out


def deployment(md: modeldeployment.ModelDeployment, events: Sequence[EventRecord]) -> dict[str, Any]:
    """One deployment as the page shows it (pure)."""
    status = md.status or modeldeployment.ModelDeploymentStatus()
    ready = conditions.find(status.conditions, conditions.READY)
    return {
        "id": f"{md.metadata.namespace or ''}/{md.metadata.name}",
        "namespace": md.metadata.namespace or "",
        "name": md.metadata.name,
        "model": md.spec.model.name,
        "version": md.spec.model.version,
        "phase": status.phase,
        "paused": md.spec.paused,
        "ready": {"status": ready.status, "reason": ready.reason, "message": ready.message} if ready else None,
        "steps": steps(md),
        "currentStep": status.current_step,  # 1-based, as status.currentStep and the conditions
        "stepStartedAt": _iso(status.step_started_at),
        "stableRevision": status.stable_revision,
        "canaryRevision": status.canary_revision,
        "abortedRevision": status.aborted_revision,
        "devices": status.devices.to_wire(),
        "conditions": [
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": _iso(c.last_transition_time),
            }
            for c in status.conditions
        ],
        "rolloutFailure": status.rollout_failure.to_wire() if status.rollout_failure else None,
        "compileFailure": status.compile_failure.to_wire() if status.compile_failure else None,
        "events": [e.to_json() for e in sorted(events, key=_event_order, reverse=True)[:MAX_EVENTS]],
    }


def _event_order(e: EventRecord) -> dt.datetime:
    return e.time or dt.datetime.min.replace(tzinfo=dt.UTC)


def running(mds: Iterable[modeldeployment.ModelDeployment]) -> modeldeployment.ModelDeployment | None:
    """The deployment whose rollout the chart shows by default: the first with a canary out, else the first
    (pure)."""
    ordered = sorted(mds, key=lambda md: (md.metadata.namespace or "", md.metadata.name))
    for md in ordered:
        if md.status is not None and md.status.canary_revision:
            return md
    return ordered[0] if ordered else None


# --- convergence over time -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Point:
    """The devices of one deployment at one moment, by fleet-map state."""

    at: dt.datetime
    step: int | None
    canary: str | None
    counts: dict[str, int]

    def same(self, other: Point | None) -> bool:
        """Nothing but the time differs."""
        return other is not None and (self.step, self.canary, self.counts) == (other.step, other.canary, other.counts)

    def to_json(self) -> dict[str, Any]:
        return {"t": _iso(self.at), "step": self.step, "canary": self.canary, "counts": self.counts}


def point(md: modeldeployment.ModelDeployment, tiles: Sequence[fleetmap.Tile], now: dt.datetime) -> Point:
    """Where the devices of ``md`` stand at ``now`` (pure)."""
    status = md.status or modeldeployment.ModelDeploymentStatus()
    states = fleetmap.deployment_states(tiles, md.metadata.namespace or "", md.metadata.name)
    step = status.current_step_index if status.canary_revision else None
    return Point(now, step, status.canary_revision, fleetmap.counts(states))


class History:
    """The convergence series of one deployment, bounded to ``limit`` points.

    >>> t0 = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    >>> h = History(limit=4)
    >>> for i in range(10):
    ...     _ = h.add(Point(t0 + dt.timedelta(seconds=i), None, None, {"canary": i}))
    >>> [p.counts["canary"] for p in h.points]
    [0, 6, 8, 9]
    """

    def __init__(self, limit: int = 1200) -> None:
        self.limit = max(limit, 4)
        self.points: collections.deque[Point] = collections.deque()

    def add(self, p: Point) -> bool:
        """Record ``p`` when it differs from the last point; returns whether it was recorded."""
        if self.points and p.same(self.points[-1]):
            return False
        self.points.append(p)
        if len(self.points) > self.limit:
            every = list(self.points)
            kept = every[::2] if len(every) % 2 else [*every[:-1:2], every[-1]]
            self.points = collections.deque(kept)
        return True

    def to_json(self) -> list[dict[str, Any]]:
        return [p.to_json() for p in self.points]


__all__ = ["MAX_EVENTS", "EventRecord", "History", "Point", "deployment", "point", "running", "steps"]
