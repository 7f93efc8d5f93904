"""A small async Kubernetes API surface (list/get/create/merge-patch/delete by path) and its implementation.

:class:`KubeApi` is the Protocol the operator's adapters are written against, so they can move onto the shared aiohttp
client later without changing. :class:`KubernetesApi` implements it with the official ``kubernetes`` client's generic
``call_api`` run in a worker thread. Vendor exceptions stop here: 404 becomes :class:`NotFound`, 409 :class:`Conflict`
(retry with fresh data), 5xx/429/network errors :class:`TransientError`, and 400/403/422 :class:`ApiRejected` (a
permanent problem: RBAC or an invalid object).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from edgefleet.core import errors


@dataclasses.dataclass(frozen=True)
class Resource:
    """A resource type: API group ('' for the core group), version and plural."""

    group: str
    version: str
    plural: str

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        """The URL path of a collection or object (pure)."""
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if namespace is not None:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
        if subresource is not None:
            base += f"/{subresource}"
        return base


SECRETS = Resource("", "v1", "secrets")
EVENTS = Resource("", "v1", "events")
CONTROLLER_REVISIONS = Resource("apps", "v1", "controllerrevisions")


class NotFound(errors.EdgefleetError):
    """The object does not exist."""


class Conflict(errors.TransientError):
    """The object changed since it was read (409); read it again and retry."""


class ApiRejected(errors.EdgefleetError):
    """The API server refused the request for a reason retrying will not fix (RBAC, validation)."""


class KubeApi(Protocol):
    """What edgefleet's adapters need from the Kubernetes API."""

    async def list(self, resource: Resource, namespace: str | None, label_selector: str = "") -> list[dict[str, Any]]:
        """All objects of ``resource`` in ``namespace`` (None: all namespaces)."""
        ...

    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        """One object; raises NotFound."""
        ...

    async def create(self, resource: Resource, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """Create an object; raises Conflict when it exists."""
        ...

    async def merge_patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """JSON merge patch (RFC 7386); a ``metadata.resourceVersion`` in ``patch`` makes it conditional."""
        ...

    async def delete(self, resource: Resource, namespace: str | None, name: str) -> None:
        """Delete an object; a missing object is not an error."""
        ...


class KubernetesApi:
    """:class:`KubeApi` over the official client (in-cluster config, or a kubeconfig file)."""

    def __init__(self, kubeconfig: str | None = None, timeout: float = 30.0) -> None:
        import kubernetes

        configuration = kubernetes.client.Configuration()
        try:
            if kubeconfig:
                kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
            else:
                try:
                    kubernetes.config.load_incluster_config(client_configuration=configuration)
                except kubernetes.config.ConfigException:
                    kubernetes.config.load_kube_config(client_configuration=configuration)
        except (kubernetes.config.ConfigException, OSError) as exc:
            raise ApiRejected(
                f"no Kubernetes credentials: {exc}; run in a pod with a ServiceAccount or set KUBECONFIG"
            ) from exc
        self._client = kubernetes.client.ApiClient(configuration)
        self._timeout = timeout

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        return await asyncio.to_thread(self._call_sync, method, path, body, query, content_type)

    def _call_sync(self, method: str, path: str, body: Any, query: dict[str, str] | None, content_type: str) -> Any:
        import kubernetes
        import urllib3

        if query:
            path += "?" + urlencode(query)
        try:
            response = self._client.call_api(
                path,
                method,
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=self._timeout,
            )
            # Read the body inside the try: a big LIST cut off mid-stream (the API server's request timeout under
            # load) is a transient failure to retry soon, not an unclassified crash that kopf backs off for 60 s.
            data = response[0].data if isinstance(response, tuple) else response.data
        except kubernetes.client.ApiException as exc:
            reason = _reason(exc.body) or exc.reason
            where = f"{method} {path}"
            if exc.status == 404:
                raise NotFound(f"{where}: not found") from None
            if exc.status == 409:
                raise Conflict(f"{where}: conflict ({reason}); retrying with fresh data", delay=1.0) from None
            if exc.status in (400, 401, 403, 422):
                raise ApiRejected(f"{where}: {exc.status} {reason}; check RBAC and the object") from None
            raise errors.TransientError(f"{where}: {exc.status} {reason}", delay=5.0) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise errors.TransientError(f"{method} {path}: API server unreachable ({exc})", delay=5.0) from None
        return json.loads(data) if data else None

    async def list(self, resource: Resource, namespace: str | None, label_selector: str = "") -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else None
        result = await self._call("GET", resource.path(namespace), query=query)
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", resource.path(namespace, name))
        return result

    async def create(self, resource: Resource, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", resource.path(namespace), body=body)
        return result

    async def merge_patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "PATCH",
            resource.path(namespace, name, subresource),
            body=patch,
            content_type="application/merge-patch+json",
        )
        return result

    async def delete(self, resource: Resource, namespace: str | None, name: str) -> None:
        try:
            await self._call("DELETE", resource.path(namespace, name))
        except NotFound:
            return

    def close(self) -> None:
        self._client.close()


def current_namespace(kubeconfig: str | None = None) -> str:
    """The namespace of the kubeconfig's current context ("default" when unset or without a kubeconfig)."""
    import kubernetes

    try:
        _, context = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
    except (kubernetes.config.ConfigException, OSError, TypeError):
        return "default"
    namespace = (context or {}).get("context", {}).get("namespace")
    return str(namespace) if namespace else "default"


def _reason(body: Any) -> str:
    try:
        return str(json.loads(body).get("message", ""))
    except (TypeError, ValueError, AttributeError):
        return ""


__all__ = [
    "CONTROLLER_REVISIONS",
    "EVENTS",
    "SECRETS",
    "ApiRejected",
    "Conflict",
    "KubeApi",
    "KubernetesApi",
    "NotFound",
    "Resource",
    "current_namespace",
]
