"""Device inventories for ``edgefleet plan``: a YAML file of EdgeDevices, or the EdgeDevices of a live cluster.

Errors are :class:`~edgefleet.core.errors.InvalidSpecError` (a file or an object that does not parse; the message
says where) and whatever the Kubernetes client raises (:mod:`edgefleet.core.errors` types).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from edgefleet.adapters import fleet, kube, manifests
from edgefleet.api import edgedevice
from edgefleet.core import errors, validation
from edgefleet.core.documents import Document


def from_file(path: Path) -> list[edgedevice.EdgeDevice]:
    """EdgeDevices from a multi-document YAML file or a ``kind: List`` / ``EdgeDeviceList``."""
    documents = manifests.load_file(path)
    flat: list[Document] = []
    for doc in documents:
        items = doc.value.get("items") if isinstance(doc.value, dict) else None
        if isinstance(items, list):
            for i, item in enumerate(items):
                sub = {k[2:]: v for k, v in doc.positions.items() if k[:2] == ("items", i)}
                flat.append(Document(doc.source, doc.index, item, sub or doc.positions))
        else:
            flat.append(doc)
    devices: list[edgedevice.EdgeDevice] = []
    for doc in flat:
        parsed, diagnostics = validation.parse_object(doc)
        problems = [d for d in diagnostics if d.severity == "error"]
        if problems:
            raise errors.InvalidSpecError("\n".join(map(str, problems)))
        if parsed is not None and isinstance(parsed.obj, edgedevice.EdgeDevice):
            devices.append(parsed.obj)
    return devices


def from_cluster(kubeconfig: Path | None, context: str | None = None) -> list[edgedevice.EdgeDevice]:
    """EdgeDevices of every namespace of a live cluster (kubeconfig, or in-cluster credentials when None)."""
    connection = kube.from_kubeconfig(kubeconfig, context) if kubeconfig is not None else kube.in_cluster()
    items = asyncio.run(_list(connection))
    devices = []
    for item in items:
        try:
            devices.append(edgedevice.EdgeDevice.model_validate(item))
        except ValueError as exc:
            name = item.get("metadata", {}).get("name", "?")
            raise errors.InvalidSpecError(f"EdgeDevice {name} in the cluster does not parse: {exc}") from exc
    return devices


async def _list(connection: kube.Connection, resource: kube.Resource = kube.EDGEDEVICES) -> list[kube.JsonObject]:
    client = kube.connect(connection)
    try:
        return (await client.list(resource, None)).items
    finally:
        await client.close()


def unreachable_in_cluster(
    kubeconfig: Path | None, context: str | None = None, now: dt.datetime | None = None
) -> set[tuple[str, str]]:
    """(namespace, name) of every Lease in a live cluster that was not renewed within its duration: the devices the
    operator counts as unreachable (by their ``renewTime``; the operator, which watches them, goes by when it saw
    each renewal)."""
    connection = kube.from_kubeconfig(kubeconfig, context) if kubeconfig is not None else kube.in_cluster()
    now = now or dt.datetime.now(dt.UTC)
    out = set()
    for raw in asyncio.run(_list(connection, kube.LEASES)):
        seen = fleet.observe_lease(raw, None, now)
        meta = raw.get("metadata") or {}
        if seen is not None and now >= seen.contact().expires_at:
            out.add((str(meta.get("namespace") or ""), str(meta.get("name"))))
    return out


__all__ = ["from_cluster", "from_file", "unreachable_in_cluster"]
