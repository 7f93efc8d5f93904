"""An in-memory :class:`edgefleet.adapters.protocols.KubeClient` for fast unit tests of the code built on it.

It keeps objects by (resource, namespace, name), bumps one ``resourceVersion`` counter on every write (as etcd's
revision), honours a ``metadata.resourceVersion`` in a merge patch the way the API server does (409 when it is stale),
filters by equality label selectors and ``metadata.name`` field selectors, serves discovery for the well-known
resources, and streams changes to watchers (a :class:`~edgefleet.adapters.kube.Listing` first, then every change). The
contract it shares with the real client is ``tests/adapters/test_kube.py``, which runs against both.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from edgefleet.adapters import kube
from edgefleet.core import errors

Key = tuple[kube.Resource, str | None, str]


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def _selected(obj: dict[str, Any], label_selector: str | None, field_selector: str | None) -> bool:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    for term in filter(None, (label_selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    for term in filter(None, (field_selector or "").split(",")):
        key, _, value = term.partition("=")
        if key != "metadata.name":
            raise errors.InvalidSpecError(f"the fake supports only metadata.name field selectors, not {key}")
        if meta.get("name") != value:
            return False
    return True


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.revision = 0
        self.before_patch: Callable[[Key], None] | None = None
        self.patches = 0
        self.kinds = {(r.api_version, r.kind): r for r in kube.resources.WELL_KNOWN}
        self._watchers: list[tuple[kube.Resource, str | None, asyncio.Queue[kube.WatchEvent]]] = []

    def _version(self) -> str:
        self.revision += 1
        return str(self.revision)

    def _notify(self, resource: kube.Resource, namespace: str | None, event: kube.WatchEvent) -> None:
        for watched, ns, queue in self._watchers:
            if watched == resource and ns in (None, namespace):
                queue.put_nowait(kube.WatchEvent(event.type, copy.deepcopy(event.object)))

    def put(self, resource: kube.Resource, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """Store ``body`` as is (a write by someone else); returns the stored copy."""
        body = copy.deepcopy(body)
        body["kind"] = resource.kind
        meta = body.setdefault("metadata", {})
        meta["resourceVersion"] = self._version()
        if namespace is not None and resource.namespaced:
            meta["namespace"] = namespace
        key = (resource, namespace if resource.namespaced else None, meta["name"])
        event: Literal["ADDED", "MODIFIED"] = "MODIFIED" if key in self.objects else "ADDED"
        self.objects[key] = body
        self._notify(resource, key[1], kube.WatchEvent(event, body))
        return copy.deepcopy(body)

    async def list(
        self,
        resource: kube.Resource,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> kube.Listing:
        items = [
            copy.deepcopy(v)
            for (r, ns, _), v in sorted(self.objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2]))
            if r == resource and namespace in (None, ns) and _selected(v, label_selector, field_selector)
        ]
        return kube.Listing(items, str(self.revision))

    async def get(self, resource: kube.Resource, namespace: str | None, name: str) -> dict[str, Any]:
        try:
            return copy.deepcopy(self.objects[(resource, namespace if resource.namespaced else None, name)])
        except KeyError:
            raise errors.NotFoundError(f"{resource.kind} {namespace}/{name}: not found") from None

    async def create(self, resource: kube.Resource, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        if (resource, namespace if resource.namespaced else None, body["metadata"]["name"]) in self.objects:
            raise errors.ConflictError(f"{resource.kind} {namespace}/{body['metadata']['name']} already exists")
        return self.put(resource, namespace, body)

    async def merge_patch(
        self,
        resource: kube.Resource,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        key = (resource, namespace, name)
        if self.before_patch is not None:
            hook, self.before_patch = self.before_patch, None
            hook(key)
        current = await self.get(resource, namespace, name)
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise errors.ConflictError(f"{name}: the object has been modified")
        if subresource == "status":
            patch = {"status": patch.get("status")}
        self.patches += 1
        return self.put(resource, namespace, merge(current, patch))

    async def apply(
        self,
        resource: kube.Resource,
        namespace: str | None,
        body: dict[str, Any],
        *,
        field_manager: str,
        force: bool = False,
    ) -> dict[str, Any]:
        name = body["metadata"]["name"]
        try:
            current = await self.get(resource, namespace, name)
        except errors.NotFoundError:
            current = {}
        merged = merge(current, body)
        merged["metadata"]["managedFields"] = [{"manager": field_manager, "operation": "Apply"}]
        return self.put(resource, namespace, merged)

    async def delete(self, resource: kube.Resource, namespace: str | None, name: str) -> bool:
        gone = self.objects.pop((resource, namespace if resource.namespaced else None, name), None)
        if gone is None:
            return False
        gone["metadata"]["resourceVersion"] = self._version()
        self._notify(resource, namespace, kube.WatchEvent("DELETED", gone))
        return True

    async def discover(self, api_version: str, kind: str) -> kube.Resource:
        try:
            return self.kinds[(api_version, kind)]
        except KeyError:
            raise errors.InvalidSpecError(
                f"the cluster does not serve {kind} in {api_version}; install its CRD first", errors.Reason.UNKNOWN_KIND
            ) from None

    async def watch(
        self,
        resource: kube.Resource,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: int = 300,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
    ) -> AsyncIterator[kube.Change]:
        """A list, then every change after it (``resource_version`` is ignored: the fake never expires one)."""
        queue: asyncio.Queue[kube.WatchEvent] = asyncio.Queue()
        watcher = (resource, namespace, queue)
        self._watchers.append(watcher)  # before the list, so no change between the two is missed
        try:
            listing = await self.list(resource, namespace, label_selector=label_selector, field_selector=field_selector)
            yield listing
            while True:
                event = await queue.get()
                if int(event.object["metadata"]["resourceVersion"]) <= int(listing.resource_version):
                    continue
                if _selected(event.object, label_selector, field_selector):
                    yield event
        finally:
            self._watchers.remove(watcher)
