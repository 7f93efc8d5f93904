"""What the dashboard knows about the cluster: watch-backed caches turned into fleet-map tiles, and what changed.

:class:`FleetCache` follows EdgeDevices, ModelDeployments and the devices' heartbeat Leases through
:class:`edgefleet.adapters.informer.Informer` (the client's one list-and-watch loop), and the Events about
ModelDeployments through :meth:`edgefleet.adapters.kube.Client.watch`. Every change marks the objects it touches;
:meth:`FleetCache.refresh` (run by :meth:`FleetCache.run` after a change has had ``coalesce_seconds`` to gather with
others, and every ``tick_seconds`` so Leases that expire are noticed) recomputes only their tiles
(:func:`edgefleet.core.fleetmap.tile`), the per-line counts, the deployments' panels and convergence points, and hands
each subscriber (one per open page) the part of the change it shows: the counts always, tiles only for the lines it
has expanded, one device's page when it has one open. A page that cannot keep up is dropped; its browser reconnects
and gets a fresh snapshot.

Nothing here writes to the cluster.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pydantic

from edgefleet.adapters import informer, kube, protocols
from edgefleet.api import edgedevice, modeldeployment
from edgefleet.core import errors, fleetmap, rolloutview

log = logging.getLogger(__name__)
QUEUE_LIMIT = 64
"""Updates waiting for one page before it is dropped as too slow."""
MAX_TRANSITIONS = 20
"""Tile state changes remembered per device (the device page's history)."""
ANNOTATION_CHARS = 2048
HIDDEN_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(t: dt.datetime | None) -> str | None:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if t is not None else None


def _time(raw: Any) -> dt.datetime | None:
    if not raw:
        return None
    try:
        t = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


# --- parsing at the boundary -----------------------------------------------------------------------------------------


def parse_device(obj: dict[str, Any]) -> edgedevice.EdgeDevice | None:
    """An EdgeDevice, or None when the API server holds one this version cannot read."""
    try:
        return edgedevice.EdgeDevice.model_validate(obj)
    except pydantic.ValidationError:
        log.warning("Skipped unreadable EdgeDevice name=%s", (obj.get("metadata") or {}).get("name"))
        return None


def parse_deployment(obj: dict[str, Any]) -> modeldeployment.ModelDeployment | None:
    try:
        return modeldeployment.ModelDeployment.model_validate(obj)
    except pydantic.ValidationError:
        log.warning("Skipped unreadable ModelDeployment name=%s", (obj.get("metadata") or {}).get("name"))
        return None


def parse_lease(obj: dict[str, Any]) -> fleetmap.Heartbeat:
    spec = obj.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    return fleetmap.Heartbeat(
        renew_time=_time(spec.get("renewTime")),
        duration_seconds=int(duration) if isinstance(duration, int) else None,
        holder=str(spec["holderIdentity"]) if spec.get("holderIdentity") else None,
    )


def parse_event(obj: dict[str, Any]) -> tuple[str, rolloutview.EventRecord] | None:
    """``(namespace/name of the deployment, event)``."""
    involved = obj.get("involvedObject") or {}
    if involved.get("kind") != modeldeployment.KIND or not involved.get("name"):
        return None
    namespace = involved.get("namespace") or (obj.get("metadata") or {}).get("namespace") or ""
    when = _time(obj.get("lastTimestamp")) or _time(obj.get("eventTime")) or _time(obj.get("firstTimestamp"))
    count = obj.get("count")
    record = rolloutview.EventRecord(
        type=str(obj.get("type") or ""),
        reason=str(obj.get("reason") or "")[:256],
        message=str(obj.get("message") or "")[:4096],
        time=when,
        count=count if isinstance(count, int) else 1,
    )
    return f"{namespace}/{involved['name']}", record


# --- subscribers -----------------------------------------------------------------------------------------------------


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


@dataclasses.dataclass
class Change:
    """What one refresh changed."""

    tiles: list[tuple[fleetmap.Tile | None, fleetmap.Tile | None]] = dataclasses.field(default_factory=list)
    summary: bool = False
    deployments: bool = False
    points: dict[str, rolloutview.Point] = dataclasses.field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.tiles or self.summary or self.deployments or self.points)


# --- the cache -------------------------------------------------------------------------------------------------------


class FleetCache:
    """The fleet of ``namespaces`` (None: every namespace) as the dashboard shows it."""

    def __init__(
        self,
        client: protocols.KubeClient,
        namespaces: Sequence[str] | None,
        *,
        clock: Callable[[], dt.datetime] = _utcnow,
        tick_seconds: float = 1.0,
        coalesce_seconds: float = 0.1,
        history_limit: int = 1200,
        title: str = "",
        expand_below: int = 1000,
    ) -> None:
        self.client = client
        self.namespaces = list(namespaces) if namespaces else None
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.coalesce_seconds = coalesce_seconds
        self.history_limit = history_limit
        self.title = title
        self.expand_below = expand_below
        scopes: list[str | None] = list(self.namespaces) if self.namespaces else [None]
        key = informer.namespaced_key
        self.devices = {
            ns: informer.Informer(client, kube.EDGEDEVICES, ns, parse_device, on_change=self._device_changed, key=key)
            for ns in scopes
        }
        self.deployment_caches = {
            ns: informer.Informer(
                client, kube.MODELDEPLOYMENTS, ns, parse_deployment, on_change=self._deployment_changed, key=key
            )
            for ns in scopes
        }
        self.leases = {
            ns: informer.Informer(client, kube.LEASES, ns, parse_lease, on_change=self._device_changed, key=key)
            for ns in scopes
        }
        self.tiles: dict[str, fleetmap.Tile] = {}
        self.summary = fleetmap.summarise(())
        self.deployments: dict[str, modeldeployment.ModelDeployment] = {}
        self.panels: dict[str, dict[str, Any]] = {}
        self.histories: dict[str, rolloutview.History] = {}
        self.events: dict[str, dict[tuple[str, str], rolloutview.EventRecord]] = collections.defaultdict(dict)
        self.transitions: dict[str, collections.deque[dict[str, Any]]] = {}
        self.rollbacks: dict[str, fleetmap.Rollback] = {}  # the last rollback seen per device, while it matters
        self.subscribers: set[Subscription] = set()
        self.refreshes = 0
        self._online: dict[str, bool | None] = {}
        self._dirty: set[str] = set()
        self._all_dirty = True
        self._deployments_dirty = True
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def _informers(self) -> Iterable[informer.Informer[Any]]:
        yield from self.devices.values()
        yield from self.deployment_caches.values()
        yield from self.leases.values()

    async def start(self) -> None:
        """Start every watch and the refresh loop on the running event loop."""
        for inf in self._informers():
            inf.start()
        for ns in self.devices:
            self._tasks.append(asyncio.create_task(self._follow_events(ns), name=f"dashboard events {ns}"))
        self._tasks.append(asyncio.create_task(self.run(), name="dashboard refresh"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for inf in self._informers():
            await inf.stop()
        for sub in list(self.subscribers):
            self._drop(sub)

    async def wait_synced(self, timeout: float, lease_timeout: float = 5.0) -> None:
        """Wait for the first complete list of devices and deployments (TransientError after ``timeout``), and up
        to ``lease_timeout`` for the Leases (without them, reachability reads unknown)."""
        for devices in self.devices.values():
            await devices.wait_synced(timeout)
        for deployments in self.deployment_caches.values():
            await deployments.wait_synced(timeout)
        for lease in self.leases.values():
            with contextlib.suppress(errors.TransientError):
                await lease.wait_synced(lease_timeout)
        self.refresh()

    def synced(self) -> dict[str, bool]:
        return {
            "devices": all(i.synced.is_set() for i in self.devices.values()),
            "deployments": all(i.synced.is_set() for i in self.deployment_caches.values()),
            "leases": all(i.synced.is_set() for i in self.leases.values()),
        }

    # --- what changed --------------------------------------------------------------------------------------------

    def _device_changed(self, key: str | None) -> None:
        if key is None:
            self._all_dirty = True
        else:
            self._dirty.add(key)
        self._wake.set()

    def _deployment_changed(self, _key: str | None) -> None:
        self._deployments_dirty = True
        self._all_dirty = True  # a new canary or stable revision changes what every tile of the namespace means
        self._wake.set()

    async def _follow_events(self, namespace: str | None) -> None:
        field = f"involvedObject.kind={modeldeployment.KIND}"
        async for change in self.client.watch(kube.EVENTS, namespace, field_selector=field):
            items = change.items if isinstance(change, kube.Listing) else [change.object]
            if isinstance(change, kube.Listing):
                for per in self.events.values():
                    per.clear()
            for obj in items:
                parsed = parse_event(obj)
                if parsed is None:
                    continue
                md, record = parsed
                uid = str((obj.get("metadata") or {}).get("uid") or (obj.get("metadata") or {}).get("name"))
                per_md = self.events[md]
                if isinstance(change, kube.WatchEvent) and change.type == "DELETED":
                    per_md.pop((md, uid), None)
                else:
                    per_md[(md, uid)] = record
                if len(per_md) > 4 * rolloutview.MAX_EVENTS:  # keep the newest
                    for old in sorted(per_md, key=lambda k: per_md[k].time or dt.datetime.min.replace(tzinfo=dt.UTC))[
                        : len(per_md) - 2 * rolloutview.MAX_EVENTS
                    ]:
                        del per_md[old]
            self._deployments_dirty = True
            self._wake.set()

    def _device(self, key: str) -> edgedevice.EdgeDevice | None:
        namespace = key.split("/", 1)[0]
        cache = self.devices.get(namespace) or self.devices.get(None)
        return cache.get(key) if cache is not None else None

    def _heartbeat(self, key: str) -> fleetmap.Reachability | fleetmap.Heartbeat | None:
        namespace = key.split("/", 1)[0]
        cache = self.leases.get(namespace) or self.leases.get(None)
        if cache is None or not cache.synced.is_set():
            return fleetmap.UNKNOWN
        return cache.get(key)

    def _reach(self, key: str, now: dt.datetime) -> fleetmap.Reachability:
        beat = self._heartbeat(key)
        if isinstance(beat, fleetmap.Reachability):
            return beat
        return fleetmap.reachability(beat, now)

    def _all_device_keys(self) -> set[str]:
        keys: set[str] = set()
        for cache in self.devices.values():
            keys.update(f"{d.metadata.namespace or ''}/{d.metadata.name}" for d in cache.items())
        return keys

    def refresh(self) -> Change:
        """Recompute what the marked changes (and the passing of time) changed; returns it. Called by :meth:`run`;
        tests call it directly."""
        now = self.clock()
        self.refreshes += 1
        change = Change()
        if self._deployments_dirty:
            deployments: dict[str, modeldeployment.ModelDeployment] = {}
            for cache in self.deployment_caches.values():
                for md in cache.items():
                    deployments[f"{md.metadata.namespace or ''}/{md.metadata.name}"] = md
            self.deployments = deployments
        by_namespace: dict[str, dict[str, modeldeployment.ModelDeployment]] = collections.defaultdict(dict)
        for md in self.deployments.values():
            by_namespace[md.metadata.namespace or ""][md.metadata.name] = md
        current = self._all_device_keys()
        if self._all_dirty:
            keys = current | set(self.tiles)
        else:
            keys = set(self._dirty)
            # Leases expire with time alone: look at every device's reachability, re-tile those whose changed.
            for key in current:
                if self._reach(key, now).online != self._online.get(key):
                    keys.add(key)
            keys |= set(self.tiles) - current
        self._dirty.clear()
        self._all_dirty = False
        for key in keys:
            old = self.tiles.get(key)
            device = self._device(key) if key in current else None
            if device is None:
                if old is not None:
                    del self.tiles[key]
                    self._online.pop(key, None)
                    self.transitions.pop(key, None)
                    self.rollbacks.pop(key, None)
                    change.tiles.append((old, None))
                continue
            reach = self._reach(key, now)
            self._online[key] = reach.online
            namespaced = by_namespace.get(device.metadata.namespace or "", {})
            new = fleetmap.tile(device, namespaced, reach)
            for rollback in fleetmap.rollbacks(new, now):
                known = self.rollbacks.get(key)
                if known is None or known.revision != rollback.revision:  # keep when it was first seen
                    self.rollbacks[key] = rollback
            if new.state != "rolledBack":
                note = fleetmap.rollback_note(self.rollbacks.get(key), namespaced)
                if not note:
                    self.rollbacks.pop(key, None)
                new = dataclasses.replace(new, note=note)
            if new != old:
                self.tiles[key] = new
                change.tiles.append((old, new))
                if old is None or old.state != new.state:
                    went = self.transitions.setdefault(key, collections.deque(maxlen=MAX_TRANSITIONS))
                    went.append({"t": _iso(now), "state": new.state, "reason": new.reason})
        if change.tiles:
            summary = fleetmap.summarise(self.tiles.values())
            if summary != self.summary:
                self.summary = summary
                change.summary = True
        if change.tiles or self._deployments_dirty:
            tiles = list(self.tiles.values())
            for key, md in self.deployments.items():
                history = self.histories.setdefault(key, rolloutview.History(self.history_limit))
                p = rolloutview.point(md, tiles, now)
                if history.add(p):
                    change.points[key] = p
            for key in set(self.histories) - set(self.deployments):
                del self.histories[key]
        if self._deployments_dirty:
            panels = {
                key: rolloutview.deployment(md, list(self.events.get(key, {}).values()))
                for key, md in sorted(self.deployments.items())
            }
            if panels != self.panels:
                self.panels = panels
                change.deployments = True
            self._deployments_dirty = False
        return change

    async def run(self) -> None:
        """Refresh after changes (gathered for ``coalesce_seconds``) and every ``tick_seconds``; push to every page.
        Runs until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick_seconds)
                await asyncio.sleep(self.coalesce_seconds)
            self._wake.clear()
            try:
                change = self.refresh()
            except Exception:  # a bug in one refresh must not end the dashboard's view for good
                log.exception("Failed to refresh the dashboard")
                continue
            if change:
                self.publish(change)

    # --- pages ---------------------------------------------------------------------------------------------------

    def subscribe(self, sub: Subscription) -> Subscription:
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)

    def _drop(self, sub: Subscription) -> None:
        sub.dropped = True
        self.subscribers.discard(sub)
        with contextlib.suppress(asyncio.QueueFull):
            sub.queue.put_nowait(None)

    def publish(self, change: Change) -> None:
        """Give every page its part of ``change``; drop the pages that fell too far behind."""
        for sub in list(self.subscribers):
            message = self.update(sub, change)
            if message is None:
                continue
            try:
                sub.queue.put_nowait(message)
            except asyncio.QueueFull:
                log.warning("Dropped a dashboard page that fell behind; it reconnects with a fresh snapshot")
                sub.dropped = True
                self.subscribers.discard(sub)

    def meta(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "namespaces": self.namespaces,
            "synced": self.synced(),
            "now": _iso(self.clock()),
            "expandBelow": self.expand_below,
            "refreshes": self.refreshes,
        }

    def chart_of(self, sub: Subscription) -> str | None:
        if sub.deployment in self.deployments:
            return sub.deployment
        md = rolloutview.running(self.deployments.values())
        return f"{md.metadata.namespace or ''}/{md.metadata.name}" if md is not None else None

    def snapshot(self, sub: Subscription) -> dict[str, Any]:
        """Everything ``sub`` shows, for a page that just (re)connected."""
        chart = sub.chart = self.chart_of(sub)
        history = self.histories.get(chart) if chart else None
        return {
            "meta": self.meta(),
            "fleet": self.summary.to_json(),
            "deployments": list(self.panels.values()),
            "tiles": [t.to_json() for t in sorted(self.tiles.values(), key=lambda t: t.id) if sub.shows(t.line_key)],
            "device": self.device_page(sub.device) if sub.device else None,
            "chart": {"deployment": chart, "points": history.to_json() if history else []},
            "expandedAll": sub.all_lines,
        }

    def update(self, sub: Subscription, change: Change) -> dict[str, Any] | None:
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
            out["fleet"] = self.summary.to_json()
        if change.deployments:
            out["deployments"] = list(self.panels.values())
        chart = self.chart_of(sub)
        if chart != sub.chart:  # the first deployment appeared, or another rollout started: the whole series
            sub.chart = chart
            history = self.histories.get(chart) if chart else None
            out["chart"] = {"deployment": chart, "points": history.to_json() if history else []}
        elif chart is not None and chart in change.points:
            out["points"] = {"deployment": chart, "points": [change.points[chart].to_json()]}
        if device_changed and sub.device is not None:
            out["device"] = self.device_page(sub.device)
        if not out:
            return None
        out["meta"] = self.meta()
        return out

    def device_page(self, key: str) -> dict[str, Any] | None:
        """One device in full: labels, models with desired entry and report, health, conditions, reachability and the
        tile states this dashboard saw it go through."""
        device = self._device(key)
        t = self.tiles.get(key)
        if device is None or t is None:
            return {"id": key, "missing": True}
        meta = device.metadata
        status = device.status
        reports = {m.name: m for m in (status.models if status else [])}
        desired = {m.name: m for m in device.spec.models}
        lease = self._heartbeat(key)
        reach = self._reach(key, self.clock())
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
                "lastSeen": _iso(reach.last_seen),
                "holder": lease.holder if isinstance(lease, fleetmap.Heartbeat) else None,
                "durationSeconds": lease.duration_seconds if isinstance(lease, fleetmap.Heartbeat) else None,
            },
            "agentVersion": status.agent_version if status else None,
            "observedGeneration": status.observed_generation if status else None,
            "capabilities": status.capabilities.to_wire() if status and status.capabilities else None,
            "conditions": [c.to_wire() for c in (status.conditions if status else [])],
            "models": models,
            "transitions": list(reversed(self.transitions.get(key, ()))),
        }


__all__ = ["FleetCache", "Subscription", "parse_deployment", "parse_device", "parse_event", "parse_lease"]
