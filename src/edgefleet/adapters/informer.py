"""A watch-backed cache of one collection: client-go's reflector and store in their smallest useful form.

The operator needs every EdgeDevice of a namespace on each reconcile. Listing them each time costs the API server a full
serialisation of the collection (megabytes at 5,000 devices) per reconcile; an :class:`Informer` lists once, then keeps
the cache current from a watch (with bookmarks, so a reconnect resumes where it left off) and relists only when the API
server says the version expired (410 Gone). Items are parsed once, when they change, by the ``parse`` callback;
``on_change(name)`` is called after every change (``name`` None after a relist: anything may have changed) so a
controller can react to it instead of polling.

The cache may lag the API server by the watch latency. Writers hand their own write's response to :meth:`observe`, so
the cache never shows a writer an object older than what it wrote; a watch event older than a cached object (both
resource versions are etcd revisions, compared as integers) is ignored for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from edgefleet.adapters import kube
from edgefleet.core import errors

T = TypeVar("T")
log = logging.getLogger(__name__)
WATCH_SECONDS = 300
PAGE_SIZE = 500
"""Objects per LIST page, as client-go's reflector asks: each page is a short request, so a list of thousands of
objects never runs into a request timeout on a busy API server."""
RETRY_INITIAL_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0


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


def _is_older(new: dict[str, Any], old_version: int | None) -> bool:
    new_version = _version(new)
    return new_version is not None and old_version is not None and new_version < old_version


class Informer(Generic[T]):
    """The objects of the collection at ``path``, parsed with ``parse`` (None: left out, e.g. an invalid body)."""

    def __init__(
        self,
        client: kube.Client,
        path: str,
        parse: Callable[[dict[str, Any]], T | None],
        *,
        kind: str | None = None,
        label_selector: str | None = None,
        on_change: Callable[[str | None], None] | None = None,
    ) -> None:
        self.client = client
        self.path = path
        self.parse = parse
        self.kind = kind
        self.label_selector = label_selector
        self.on_change = on_change
        self.synced = asyncio.Event()
        self.relists = 0
        self.events = 0
        self._items: dict[str, tuple[int | None, T]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Informer[T]:
        """Run the list-and-watch loop as a task of the running event loop."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"informer {self.path}")
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
            raise errors.TransientError(f"the cache of {self.path} has not been filled yet", delay=2.0) from None

    def get(self, name: str) -> T | None:
        """One cached object by name."""
        cached = self._items.get(name)
        return cached[1] if cached is not None else None

    def items(self) -> list[T]:
        """Every cached object, ordered by name."""
        return [self._items[name][1] for name in sorted(self._items)]

    def observe(self, obj: dict[str, Any]) -> None:
        """Take an object this process just wrote (the API server's response) unless the cache has a newer one."""
        self._apply(kube.WatchEvent("MODIFIED", obj))

    def _entry(self, obj: dict[str, Any]) -> tuple[int | None, T] | None:
        parsed = self.parse(obj)
        return (_version(obj), parsed) if parsed is not None else None

    def _apply(self, event: kube.WatchEvent) -> str | None:
        """Apply one event; returns the name of the object that changed, if any."""
        obj = event.object
        name = (obj.get("metadata") or {}).get("name")
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

    async def _list(self) -> str:
        """List every object in pages; returns the list's resourceVersion (the watch starts there)."""
        items: dict[str, tuple[int | None, T]] = {}
        params = {"limit": str(PAGE_SIZE)}
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        while True:
            try:
                page = await self.client.request("GET", self.path, params=params)
            except kube.GoneError:
                params.pop("continue", None)  # the continue token expired mid-list: start over
                items = {}
                continue
            for item in page.get("items") or []:
                if self.kind is not None:
                    item["kind"] = self.kind
                entry = self._entry(item)
                if entry is not None:
                    items[str((item.get("metadata") or {}).get("name"))] = entry
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                break
            params["continue"] = str(meta["continue"])
        self._items = items
        self.relists += 1
        self.synced.set()
        return str(meta.get("resourceVersion") or "")

    def _changed(self, name: str | None) -> None:
        if self.on_change is not None:
            self.on_change(name)

    async def run(self) -> None:
        """List, then watch from the list's version; relist after 410 Gone; back off on errors. Runs until cancelled."""
        version: str | None = None
        delay = RETRY_INITIAL_SECONDS
        while True:
            try:
                if not version:
                    version = await self._list()
                    self._changed(None)
                async for event in self.client.watch(
                    self.path,
                    resource_version=version,
                    label_selector=self.label_selector,
                    timeout_seconds=WATCH_SECONDS,
                    kind=self.kind,
                ):
                    version = str((event.object.get("metadata") or {}).get("resourceVersion") or version)
                    if event.type == "BOOKMARK":
                        continue
                    self.events += 1
                    name = self._apply(event)
                    if name is not None:
                        self._changed(name)
                delay = RETRY_INITIAL_SECONDS
            except kube.GoneError:
                version = None  # the version expired: start again from a fresh list
            except (kube.KubeError, errors.TransientError) as exc:
                log.warning("Lost watch path=%s error=%s retry_in=%.1fs", self.path, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)


__all__ = ["Informer"]
