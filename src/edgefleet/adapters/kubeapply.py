"""Server-side apply, delete and inventory storage on a live cluster (the kubernetes client's DynamicClient).

Used by ``edgefleet sync``. Every vendor exception is converted here: an unknown kind or a rejected object becomes
:class:`~edgefleet.core.errors.InvalidSpecError` with the API server's message; connection problems and 5xx become
:class:`~edgefleet.core.errors.TransientError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ApiException, NotFoundError, ResourceNotFoundError

from edgefleet.core import syncplan
from edgefleet.core.errors import InvalidSpecError, TransientError

INVENTORY_KEY = "inventory"


def _convert(exc: Exception, what: str) -> Exception:
    if isinstance(exc, ApiException):
        status = exc.status or 0
        try:
            message = json.loads(exc.body or "{}").get("message") or exc.reason
        except (ValueError, AttributeError):
            message = exc.reason
        if status >= 500 or status in (0, 429):
            return TransientError(f"{what}: API server answered {status}: {message}", delay=5)
        return InvalidSpecError(f"{what}: {message}", reason="Rejected")
    return TransientError(f"{what}: {exc}", delay=5)


class Cluster:
    """A connection to one cluster (kubeconfig, or in-cluster credentials when ``kubeconfig`` is None)."""

    def __init__(self, kubeconfig: Path | None = None, context: str | None = None) -> None:
        try:
            if kubeconfig is not None:
                api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig), context=context)
            else:
                kubernetes.config.load_incluster_config()
                api = kubernetes.client.ApiClient()
            self._api = api
            self._dynamic = DynamicClient(api)
        except (kubernetes.config.ConfigException, OSError) as exc:
            raise TransientError(f"cannot connect to the cluster: {exc}") from exc
        except ApiException as exc:
            raise _convert(exc, "discovery") from exc

    def close(self) -> None:
        self._api.close()

    def _resource(self, api_version: str, kind: str) -> Any:
        try:
            return self._dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            # A CRD applied in this same sync may not be in the cached discovery yet.
            self._dynamic.resources.invalidate_cache()
            try:
                return self._dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError as exc:
                raise InvalidSpecError(
                    f"the cluster does not serve {kind} in {api_version}; install its CRD first", reason="UnknownKind"
                ) from exc

    def is_namespaced(self, api_version: str, kind: str) -> bool:
        return bool(self._resource(api_version, kind).namespaced)

    def apply(self, body: dict[str, Any], field_manager: str = syncplan.MANAGER) -> dict[str, Any]:
        """Server-side apply ``body`` with ``field_manager``, taking ownership of conflicting fields (as Flux)."""
        meta = body["metadata"]
        resource = self._resource(body["apiVersion"], body["kind"])
        try:
            result = self._dynamic.server_side_apply(
                resource,
                body=body,
                name=meta["name"],
                namespace=meta.get("namespace"),
                field_manager=field_manager,
                force_conflicts=True,
            )
        except ApiException as exc:
            raise _convert(exc, f"applying {body['kind']} {meta.get('namespace', '')}/{meta['name']}") from exc
        return dict(result.to_dict())

    def delete(self, ref: syncplan.ObjectRef) -> bool:
        """Delete an object; returns False when it was already gone."""
        resource = self._resource(ref.api_version, ref.kind)
        try:
            self._dynamic.delete(resource, name=ref.name, namespace=ref.namespace or None)
        except NotFoundError:
            return False
        except ApiException as exc:
            raise _convert(exc, f"deleting {ref}") from exc
        return True

    def list_objects(self, api_version: str, kind: str) -> list[dict[str, Any]]:
        """Every object of a kind, across namespaces."""
        resource = self._resource(api_version, kind)
        try:
            return [dict(item.to_dict()) for item in self._dynamic.get(resource).items]
        except ApiException as exc:
            raise _convert(exc, f"listing {kind}") from exc

    def get(self, ref: syncplan.ObjectRef) -> dict[str, Any] | None:
        resource = self._resource(ref.api_version, ref.kind)
        try:
            return dict(self._dynamic.get(resource, name=ref.name, namespace=ref.namespace or None).to_dict())
        except NotFoundError:
            return None
        except ApiException as exc:
            raise _convert(exc, f"reading {ref}") from exc

    def read_inventory(self, name: str, namespace: str) -> list[syncplan.ObjectRef]:
        found = self.get(syncplan.ObjectRef("v1", "ConfigMap", namespace, name))
        if not found:
            return []
        text = (found.get("data") or {}).get(INVENTORY_KEY, "")
        return [syncplan.ObjectRef.from_line(line) for line in text.splitlines() if line.strip()]

    def write_inventory(
        self, name: str, namespace: str, refs: tuple[syncplan.ObjectRef, ...], commit: str, source_id: str
    ) -> None:
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": {syncplan.LABEL_MANAGED_BY: syncplan.MANAGER}},
            }
        )
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {syncplan.LABEL_MANAGED_BY: syncplan.MANAGER, syncplan.LABEL_SOURCE: source_id},
                    "annotations": {syncplan.ANNOTATION_COMMIT: commit},
                },
                "data": {INVENTORY_KEY: "".join(r.to_line() + "\n" for r in refs)},
            }
        )


__all__ = ["Cluster"]
