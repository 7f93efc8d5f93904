"""The cluster ``edgefleet sync`` applies to: server-side apply by kind, prune, and the inventory of what it applied.

Objects are applied with the field manager ``edgefleet-sync``, taking ownership of conflicting fields (``force``, as
Flux does), through the one client (:mod:`edgefleet.adapters.kube`), which finds each kind's resource by discovery.
The inventory of one sync source (every object it applied, one :class:`~edgefleet.core.syncplan.ObjectRef` a line)
is a ConfigMap in the inventory namespace, as Flux keeps it. Errors are :mod:`edgefleet.core.errors` types: an
unknown kind or a rejected object is an ``InvalidSpecError`` with the API server's message, connection problems and
5xx a ``TransientError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from edgefleet.adapters import kube, protocols
from edgefleet.core import errors, syncplan

INVENTORY_KEY = "inventory"


async def namespaced(client: protocols.KubeClient, objects: Iterable[dict[str, Any]]) -> Callable[[str, str], bool]:
    """Whether each kind in ``objects`` is namespaced, looked up once per kind before planning (the planner is pure);
    the returned lookup raises KeyError for a kind it was not given."""
    scope: dict[tuple[str, str], bool] = {}
    for obj in objects:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if isinstance(api_version, str) and isinstance(kind, str) and (api_version, kind) not in scope:
            scope[(api_version, kind)] = (await client.discover(api_version, kind)).namespaced
    return lambda api_version, kind: scope[(api_version, kind)]


async def apply(client: protocols.KubeClient, body: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply ``body`` as ``edgefleet-sync``, taking ownership of conflicting fields (as Flux)."""
    resource = await client.discover(body["apiVersion"], body["kind"])
    return await client.apply(
        resource, body["metadata"].get("namespace"), body, field_manager=syncplan.MANAGER, force=True
    )


async def prune(client: protocols.KubeClient, ref: syncplan.ObjectRef) -> bool:
    """Delete an object; returns False when it was already gone."""
    resource = await client.discover(ref.api_version, ref.kind)
    return await client.delete(resource, ref.namespace or None, ref.name)


async def read_inventory(client: protocols.KubeClient, name: str, namespace: str) -> list[syncplan.ObjectRef]:
    """The objects an earlier sync applied (empty before the first sync)."""
    try:
        found = await client.get(kube.CONFIGMAPS, namespace, name)
    except errors.NotFoundError:
        return []
    text = (found.get("data") or {}).get(INVENTORY_KEY, "")
    return [syncplan.ObjectRef.from_line(line) for line in text.splitlines() if line.strip()]


async def write_inventory(
    client: protocols.KubeClient,
    name: str,
    namespace: str,
    refs: tuple[syncplan.ObjectRef, ...],
    commit: str,
    source_id: str,
) -> None:
    """Record ``refs`` as what the sync of ``source_id`` applied at ``commit`` (creating the namespace if needed)."""
    labels = {syncplan.LABEL_MANAGED_BY: syncplan.MANAGER}
    await apply(client, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels}})
    await apply(
        client,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels | {syncplan.LABEL_SOURCE: source_id},
                "annotations": {syncplan.ANNOTATION_COMMIT: commit},
            },
            "data": {INVENTORY_KEY: "".join(r.to_line() + "\n" for r in refs)},
        },
    )


__all__ = ["INVENTORY_KEY", "apply", "namespaced", "prune", "read_inventory", "write_inventory"]
