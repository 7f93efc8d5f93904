"""An in-memory :class:`edgefleet.adapters.kubeapi.KubeApi` for fast unit tests of the adapters built on it.

It keeps objects by (resource, namespace, name), bumps ``resourceVersion`` on every write and honours a
``metadata.resourceVersion`` in a merge patch the way the API server does (409 when it is stale). The same adapters run
against the real API server in ``tests/operator`` (control-plane tests).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

from edgefleet.adapters import kubeapi

Key = tuple[kubeapi.Resource, str | None, str]


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


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.versions = itertools.count(1)
        self.before_patch: Callable[[Key], None] | None = None
        self.patches = 0

    def put(self, resource: kubeapi.Resource, namespace: str | None, body: dict[str, Any]) -> None:
        body = copy.deepcopy(body)
        body.setdefault("metadata", {})["resourceVersion"] = str(next(self.versions))
        self.objects[(resource, namespace, body["metadata"]["name"])] = body

    async def list(
        self, resource: kubeapi.Resource, namespace: str | None, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(v)
            for (r, ns, _), v in sorted(self.objects.items(), key=lambda kv: kv[0][2])
            if r == resource and ns == namespace
        ]

    async def get(self, resource: kubeapi.Resource, namespace: str | None, name: str) -> dict[str, Any]:
        try:
            return copy.deepcopy(self.objects[(resource, namespace, name)])
        except KeyError:
            raise kubeapi.NotFound(name) from None

    async def create(self, resource: kubeapi.Resource, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        if (resource, namespace, body["metadata"]["name"]) in self.objects:
            raise kubeapi.Conflict("exists")
        self.put(resource, namespace, body)
        return await self.get(resource, namespace, body["metadata"]["name"])

    async def merge_patch(
        self,
        resource: kubeapi.Resource,
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
            raise kubeapi.Conflict(f"{name}: the object has been modified")
        self.patches += 1
        self.put(resource, namespace, merge(current, patch))
        return await self.get(resource, namespace, name)

    async def delete(self, resource: kubeapi.Resource, namespace: str | None, name: str) -> None:
        self.objects.pop((resource, namespace, name), None)
