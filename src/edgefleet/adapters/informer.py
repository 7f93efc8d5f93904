"""A watch-backed cache of one collection: client-go's reflector and store in their smallest useful form.

The operator needs every EdgeDevice of a namespace on each reconcile. Listing them each time costs the API server a full
serialisation of the collection (megabytes at 5,000 devices) per reconcile; an :class:`Informer` follows the client's
one list-and-watch loop (:meth:`edgefleet.adapters.kube.Client.watch`: a paged list, then a watch with bookmarks that
resumes after a reconnect and lists again only when the version expired). Items are parsed once, when they change, by
the ``parse`` callback; ``on_change(name)`` is called after every change (``name`` None after a list: anything may have
changed) so a controller can react to it instead of polling.

The cache may lag the API server by the watch latency. Writers hand their own write's response to :meth:`observe`, so
the cache never shows a writer an object older than what it wrote; a watch event older than a cached object (both
resource versions are etcd revisions, compared as integers) is ignored for the same reason.

Objects are keyed by name, which is unique in one namespace; a cache of every namespace (``namespace`` None) passes
``key=namespaced_key`` so two objects of the same name in different namespaces do not overwrite each other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from edgefleet.adapters import protocols
from edgefleet.adapters.kube import resources
from edgefleet.core import errors

T = TypeVar("T")


def _version(obj: dict[str, Any]) -> int | None:
    """The object's resourceVersion as an integer, or None when it is not one (pure).

    >>> _version({"metadata": {"resourceVersion": "42"}}), _version({"metadata": {}})
    (42, None)
    """
    raw = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(str(raw))
    except (TypeError, ValueError):
        return None


def namespaced_key(obj: dict[str, Any]) -> str | None:
    """``namespace/name`` of an object, the key of a cache over every namespace (pure).

    >>> namespaced_key({"metadata": {"namespace": "plant-north", "name": "cam-7"}})
    'plant-north/cam-7'
    >>> namespaced_key({"metadata": {}}) is None
    True
    """
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    return f"{meta.get('namespace') or ''}/{name}" if name else None


def _name(obj: dict[str, Any]) -> str | None:
    name = (obj.get("metadata") or {}).get("name")
    return str(name) if name else None


def _is_older(new: dict[str, Any], old_version: int | None) -> bool:
    new_version = _version(new)
    return new_version is not None and old_version is not None and new_version < old_version


class Informer(Generic[T]):
    """The objects of ``resource`` in ``namespace``, parsed with ``parse`` (None: left out, e.g. an invalid body)."""

    def __init__(
        self,
        client: protocols.KubeClient,
        resource: resources.Resource,
        namespace: str | None,
        parse: Callable[[dict[str, Any]], T | None],
        *,
        label_selector: str | None = None,
        on_change: Callable[[str | None], None] | None = None,
        key: Callable[[dict[str, Any]], str | None] = _name,
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.parse = parse
        self.label_selector = label_selector
        self.on_change = on_change
        self.key = key
        self.synced = asyncio.Event()
        self.relists = 0
        self.events = 0
        self._items: dict[str, tuple[int | None, T]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Informer[T]:
        """Run the list-and-watch loop as a task of the running event loop."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"informer {self.resource.path(self.namespace)}")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_synced(self, timeout: float) -> None:
        """Wait for the first complete list; raises TransientError after ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self.synced.wait(), timeout)
        except TimeoutError:
            raise errors.TransientError(
                f"the cache of {self.resource.path(self.namespace)} has not been filled yet", delay=2.0
            ) from None

    def get(self, name: str) -> T | None:
        """One cached object by name (by its ``key``)."""
        cached = self._items.get(name)
        return cached[1] if cached is not None else None

    def items(self) -> list[T]:
        """Every cached object, ordered by name."""
        return [self._items[name][1] for name in sorted(self._items)]

    def named_items(self) -> list[tuple[str, T]]:
        """Every cached object with its name, ordered by name."""
        return [(name, self._items[name][1]) for name in sorted(self._items)]

    def observe(self, obj: dict[str, Any]) -> None:
        """Take an object this process just wrote (the API server's response) unless the cache has a newer one."""
        self._apply(resources.WatchEvent("MODIFIED", obj))

    def _entry(self, obj: dict[str, Any]) -> tuple[int | None, T] | None:
        parsed = self.parse(obj)
        return (_version(obj), parsed) if parsed is not None else None

    def _apply(self, event: resources.WatchEvent) -> str | None:
        """Apply one event; returns the name of the object that changed, if any."""
        obj = event.object
        name = self.key(obj)
        if not name:
            return None
        cached = self._items.get(name)
        if cached is not None and _is_older(obj, cached[0]):
            return None  # this process already wrote (and cached) a newer version
        entry = self._entry(obj) if event.type != "DELETED" else None
        if entry is None:
            self._items.pop(name, None)
        else:
            self._items[name] = entry
        return str(name)

    def _replace(self, listing: resources.Listing) -> None:
        items: dict[str, tuple[int | None, T]] = {}
        for item in listing.items:
            entry = self._entry(item)
            if entry is not None:
                key = self.key(item)
                if key:
                    items[key] = entry
        self._items = items
        self.relists += 1
        self.synced.set()

    def _changed(self, name: str | None) -> None:
        if self.on_change is not None:
            self.on_change(name)

    async def run(self) -> None:
        """Follow the client's list-and-watch loop into the cache. Runs until cancelled."""
        async for change in self.client.watch(self.resource, self.namespace, label_selector=self.label_selector):
            if isinstance(change, resources.Listing):
                self._replace(change)
                self._changed(None)
                continue
            self.events += 1
            name = self._apply(change)
            if name is not None:
                self._changed(name)


__all__ = ["Informer", "namespaced_key"]
