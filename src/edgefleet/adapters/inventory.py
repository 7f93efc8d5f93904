"""Device inventories for ``edgefleet plan``: a YAML file of EdgeDevices, or the EdgeDevices of a live cluster."""

from __future__ import annotations

from pathlib import Path

from edgefleet.adapters import kubeapply, manifests
from edgefleet.api import common, edgedevice
from edgefleet.core import validation
from edgefleet.core.documents import Document
from edgefleet.core.errors import InvalidSpecError, TransientError


class InventoryError(Exception):
    """The inventory cannot be read; the message says where."""


def from_file(path: Path) -> list[edgedevice.EdgeDevice]:
    """EdgeDevices from a multi-document YAML file or a ``kind: List`` / ``EdgeDeviceList``."""
    try:
        documents = manifests.load_file(path)
    except manifests.ManifestError as exc:
        raise InventoryError(str(exc)) from exc
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
        errors = [d for d in diagnostics if d.severity == "error"]
        if errors:
            raise InventoryError("\n".join(map(str, errors)))
        if parsed is not None and isinstance(parsed.obj, edgedevice.EdgeDevice):
            devices.append(parsed.obj)
    return devices


def from_cluster(kubeconfig: Path | None, context: str | None = None) -> list[edgedevice.EdgeDevice]:
    """EdgeDevices of every namespace of a live cluster (kubeconfig, or in-cluster credentials when None)."""
    try:
        cluster = kubeapply.Cluster(kubeconfig, context)
        try:
            items = cluster.list_objects(common.API_VERSION, edgedevice.KIND)
        finally:
            cluster.close()
    except (TransientError, InvalidSpecError) as exc:
        raise InventoryError(f"cannot list EdgeDevices: {exc}") from exc
    devices = []
    for item in items:
        try:
            devices.append(edgedevice.EdgeDevice.model_validate(item))
        except ValueError as exc:
            name = item.get("metadata", {}).get("name", "?")
            raise InventoryError(f"EdgeDevice {name} in the cluster does not parse: {exc}") from exc
    return devices


__all__ = ["InventoryError", "from_cluster", "from_file"]
