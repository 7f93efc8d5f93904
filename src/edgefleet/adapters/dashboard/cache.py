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

from edgefleet.adapters import informer, kube, protocols
from edgefleet.adapters.dashboard import objects, pages
from edgefleet.api import edgedevice, modeldeployment
from edgefleet.core import errors, fleetmap, rolloutview

log = logging.getLogger(__name__)
MAX_TRANSITIONS = 20
"""Tile state changes remembered per device (the device page's history)."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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
        leases: bool = True,
        events: bool = True,
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
            ns: informer.Informer(
                client, kube.EDGEDEVICES, ns, objects.parse_device, on_change=self._device_changed, key=key
            )
            for ns in scopes
        }
        self.deployment_caches = {
            ns: informer.Informer(
                client, kube.MODELDEPLOYMENTS, ns, objects.parse_deployment, on_change=self._deployment_changed, key=key
            )
            for ns in scopes
        }
        # Without permission to read Leases (or Events) there is nothing to watch: reachability reads unknown.
        self.leases = {
            ns: informer.Informer(client, kube.LEASES, ns, objects.parse_lease, on_change=self._device_changed, key=key)
            for ns in (scopes if leases else [])
        }
        self.follow_events = events
        self.tiles: dict[str, fleetmap.Tile] = {}
        self.summary = fleetmap.summarise(())
        self.deployments: dict[str, modeldeployment.ModelDeployment] = {}
        self.panels: dict[str, dict[str, Any]] = {}
        self.histories: dict[str, rolloutview.History] = {}
        self.events: dict[str, dict[tuple[str, str], rolloutview.EventRecord]] = collections.defaultdict(dict)
        self.transitions: dict[str, collections.deque[dict[str, Any]]] = {}
        self.rollbacks: dict[str, fleetmap.Rollback] = {}  # the last rollback seen per device, while it matters
        self.subscribers: set[pages.Subscription] = set()
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
        for ns in self.devices if self.follow_events else ():
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
            "leases": bool(self.leases) and all(i.synced.is_set() for i in self.leases.values()),
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
                parsed = objects.parse_event(obj)
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

    def device(self, key: str) -> edgedevice.EdgeDevice | None:
        namespace = key.split("/", 1)[0]
        cache = self.devices.get(namespace) or self.devices.get(None)
        return cache.get(key) if cache is not None else None

    def heartbeat(self, key: str) -> fleetmap.Reachability | fleetmap.Heartbeat | None:
        namespace = key.split("/", 1)[0]
        cache = self.leases.get(namespace) or self.leases.get(None)
        if cache is None or not cache.synced.is_set():
            return fleetmap.UNKNOWN
        return cache.get(key)

    def reach(self, key: str, now: dt.datetime) -> fleetmap.Reachability:
        beat = self.heartbeat(key)
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
                if self.reach(key, now).online != self._online.get(key):
                    keys.add(key)
            keys |= set(self.tiles) - current
        self._dirty.clear()
        self._all_dirty = False
        for key in keys:
            old = self.tiles.get(key)
            device = self.device(key) if key in current else None
            if device is None:
                if old is not None:
                    del self.tiles[key]
                    self._online.pop(key, None)
                    self.transitions.pop(key, None)
                    self.rollbacks.pop(key, None)
                    change.tiles.append((old, None))
                continue
            reach = self.reach(key, now)
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
                    went.append({"t": objects.iso(now), "state": new.state, "reason": new.reason})
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

    def subscribe(self, sub: pages.Subscription) -> pages.Subscription:
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: pages.Subscription) -> None:
        self.subscribers.discard(sub)

    def _drop(self, sub: pages.Subscription) -> None:
        sub.dropped = True
        self.subscribers.discard(sub)
        with contextlib.suppress(asyncio.QueueFull):
            sub.queue.put_nowait(None)

    def publish(self, change: Change) -> None:
        """Give every page its part of ``change``; drop the pages that fell too far behind."""
        for sub in list(self.subscribers):
            message = pages.update(self, sub, change)
            if message is None:
                continue
            try:
                sub.queue.put_nowait(message)
            except asyncio.QueueFull:
                log.warning("Dropped a dashboard page that fell behind; it reconnects with a fresh snapshot")
                sub.dropped = True
                self.subscribers.discard(sub)


__all__ = ["Change", "FleetCache"]
