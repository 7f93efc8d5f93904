"""What one open page gets: its :class:`Subscription` (which lines are open, which device, which deployment's chart),
the snapshot it starts from, the part of each change it shows, and a device's page.

The functions read a :class:`~edgefleet.adapters.dashboard.cache.FleetCache` and build plain JSON-ready data; they do
not change the cache (except remembering which chart a page has).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

from edgefleet.adapters.dashboard import objects
from edgefleet.core import fleetmap, rolloutview

if TYPE_CHECKING:
    from edgefleet.adapters.dashboard.cache import Change, FleetCache

QUEUE_LIMIT = 64
"""Updates waiting for one page before it is dropped as too slow."""
ANNOTATION_CHARS = 2048
HIDDEN_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


@dataclasses.dataclass(eq=False)
class Subscription:
    """What one open page shows: expanded lines (``all_lines``: every line), one device, one deployment's chart."""

    lines: frozenset[str] = frozenset()
    all_lines: bool = False
    device: str | None = None
    deployment: str | None = None
    queue: asyncio.Queue[dict[str, Any] | None] = dataclasses.field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    dropped: bool = False
    chart: str | None = None
    """The deployment whose chart the page has (the running one unless ``deployment`` names one)."""

    def shows(self, line_key: str) -> bool:
        return self.all_lines or line_key in self.lines


def meta(fleet: FleetCache) -> dict[str, Any]:
    """What the header shows: scope, whether every watch has listed, the server's time."""
    return {
        "title": fleet.title,
        "namespaces": fleet.namespaces,
        "synced": fleet.synced(),
        "now": objects.iso(fleet.clock()),
        "expandBelow": fleet.expand_below,
        "refreshes": fleet.refreshes,
    }


def chart_of(fleet: FleetCache, sub: Subscription) -> str | None:
    """The deployment whose chart ``sub`` gets: the one it names, else the running one."""
    if sub.deployment in fleet.deployments:
        return sub.deployment
    md = rolloutview.running(fleet.deployments.values())
    return f"{md.metadata.namespace or ''}/{md.metadata.name}" if md is not None else None


def snapshot(fleet: FleetCache, sub: Subscription) -> dict[str, Any]:
    """Everything ``sub`` shows, for a page that just (re)connected."""
    chart = sub.chart = chart_of(fleet, sub)
    history = fleet.histories.get(chart) if chart else None
    return {
        "meta": meta(fleet),
        "fleet": fleet.summary.to_json(),
        "deployments": list(fleet.panels.values()),
        "tiles": [t.to_json() for t in sorted(fleet.tiles.values(), key=lambda t: t.id) if sub.shows(t.line_key)],
        "device": device_page(fleet, sub.device) if sub.device else None,
        "chart": {"deployment": chart, "points": history.to_json() if history else []},
        "expandedAll": sub.all_lines,
    }


def update(fleet: FleetCache, sub: Subscription, change: Change) -> dict[str, Any] | None:
    """The part of ``change`` that ``sub`` shows, or None when it shows none of it."""
    out: dict[str, Any] = {}
    tiles: list[dict[str, Any]] = []
    removed: list[str] = []
    device_changed = False
    for old, new in change.tiles:
        if new is not None and sub.shows(new.line_key):
            tiles.append(new.to_json())
        elif old is not None and sub.shows(old.line_key):
            removed.append(old.id)
        if sub.device is not None and sub.device in ((old.id if old else None), (new.id if new else None)):
            device_changed = True
    if tiles:
        out["tiles"] = tiles
    if removed:
        out["removed"] = removed
    if change.summary:
        out["fleet"] = fleet.summary.to_json()
    if change.deployments:
        out["deployments"] = list(fleet.panels.values())
    chart = chart_of(fleet, sub)
    if chart != sub.chart:  # the first deployment appeared, or another rollout started: the whole series
        sub.chart = chart
        history = fleet.histories.get(chart) if chart else None
        out["chart"] = {"deployment": chart, "points": history.to_json() if history else []}
    elif chart is not None and chart in change.points:
        out["points"] = {"deployment": chart, "points": [change.points[chart].to_json()]}
    if device_changed and sub.device is not None:
        out["device"] = device_page(fleet, sub.device)
    if not out:
        return None
    out["meta"] = meta(fleet)
    return out


def device_page(fleet: FleetCache, key: str) -> dict[str, Any] | None:
    """One device in full: labels, models with desired entry and report, health, conditions, reachability and the
    tile states this dashboard saw it go through."""
    device = fleet.device(key)
    t = fleet.tiles.get(key)
    if device is None or t is None:
        return {"id": key, "missing": True}
    meta = device.metadata
    status = device.status
    reports = {m.name: m for m in (status.models if status else [])}
    desired = {m.name: m for m in device.spec.models}
    lease = fleet.heartbeat(key)
    reach = fleet.reach(key, fleet.clock())
    models = []
    for m in t.models:
        entry, report = desired.get(m.model), reports.get(m.model)
        models.append(
            {
                "name": m.model,
                "deployment": m.deployment,
                "state": m.state,
                "reason": m.reason,
                "desired": entry.to_wire() if entry is not None else None,
                "report": report.to_wire() if report is not None else None,
            }
        )
    annotations = {
        k: v[:ANNOTATION_CHARS] for k, v in sorted((meta.annotations or {}).items()) if k not in HIDDEN_ANNOTATIONS
    }
    return {
        "id": key,
        "namespace": meta.namespace,
        "name": meta.name,
        "site": t.site,
        "line": t.line,
        "hardware": t.hardware,
        "state": t.state,
        "reason": t.reason,
        "note": t.note or None,
        "labels": dict(sorted((meta.labels or {}).items())),
        "annotations": annotations,
        "reachability": {
            "online": reach.online,
            "reason": reach.reason,
            "lastSeen": objects.iso(reach.last_seen),
            "holder": lease.holder if isinstance(lease, fleetmap.Heartbeat) else None,
            "durationSeconds": lease.duration_seconds if isinstance(lease, fleetmap.Heartbeat) else None,
        },
        "agentVersion": status.agent_version if status else None,
        "observedGeneration": status.observed_generation if status else None,
        "capabilities": status.capabilities.to_wire() if status and status.capabilities else None,
        "conditions": [c.to_wire() for c in (status.conditions if status else [])],
        "models": models,
        "transitions": list(reversed(fleet.transitions.get(key, ()))),
    }


__all__ = ["QUEUE_LIMIT", "Subscription", "chart_of", "device_page", "meta", "snapshot", "update"]
