"""Device inventories for ``edgefleet plan``: a YAML file of EdgeDevices, or the EdgeDevices of a live cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgefleet.adapters import manifests
from edgefleet.api import common, edgedevice
from edgefleet.core import validation
from edgefleet.core.documents import Document


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
    import kubernetes  # imported here: only this path needs the client

    try:
        if kubeconfig is not None:
            client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig), context=context)
        else:
            kubernetes.config.load_incluster_config()
            client = kubernetes.client.ApiClient()
        with client:
            api = kubernetes.client.CustomObjectsApi(client)
            listing: dict[str, Any] = api.list_cluster_custom_object(
                common.GROUP, common.VERSION, edgedevice.PLURAL, _request_timeout=30
            )
    except kubernetes.client.exceptions.ApiException as exc:
        raise InventoryError(f"listing EdgeDevices failed: {exc.status} {exc.reason}") from exc
    except (kubernetes.config.ConfigException, OSError) as exc:
        raise InventoryError(f"cannot reach the cluster: {exc}") from exc
    devices = []
    for item in listing.get("items", []):
        try:
            devices.append(edgedevice.EdgeDevice.model_validate(item))
        except ValueError as exc:
            name = item.get("metadata", {}).get("name", "?")
            raise InventoryError(f"EdgeDevice {name} in the cluster does not parse: {exc}") from exc
    return devices


__all__ = ["InventoryError", "from_cluster", "from_file"]
