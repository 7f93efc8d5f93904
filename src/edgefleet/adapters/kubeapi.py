"""A small async Kubernetes API surface (list/get/create/merge-patch/delete by path) and its implementation.

:class:`KubeApi` is the Protocol the operator's adapters are written against (tests use an in-memory fake of it);
:class:`KubernetesApi` implements it on the shared async client of :mod:`edgefleet.adapters.kube`, the same one the
edge agent uses. Errors stop here: 404 becomes :class:`NotFound`, 409 :class:`Conflict` (retry with fresh data),
5xx/429/network errors and cut-off bodies :class:`TransientError`, and other 4xx :class:`ApiRejected` (a permanent
problem: RBAC or an invalid object).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from edgefleet.adapters import kube
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
    """:class:`KubeApi` over the shared async client (:mod:`edgefleet.adapters.kube`).

    Create it inside the event loop that uses it (it owns an aiohttp session) and ``await close()`` when done.
    Credentials: ``kubeconfig`` when given, else the pod's service account, else ``$KUBECONFIG`` or
    ``~/.kube/config``.
    """

    def __init__(self, kubeconfig: str | None = None, timeout: float = 30.0) -> None:
        self.connection = _connection(kubeconfig)
        self._session = kube.new_session()
        self._client = kube.Client(self.connection, self._session, timeout_seconds=timeout)

    @property
    def client(self) -> kube.Client:
        """The underlying client, for watches (:class:`~edgefleet.adapters.informer.Informer`)."""
        return self._client

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        try:
            return await self._client.request(method, path, params=query, body=body, content_type=content_type)
        except kube.NotFoundError:
            raise NotFound(f"{method} {path}: not found") from None
        except kube.ConflictError as exc:
            raise Conflict(f"{exc}; retrying with fresh data", delay=1.0) from None
        except kube.KubeError as exc:
            raise ApiRejected(f"{exc}; check RBAC and the object") from None

    async def list(self, resource: Resource, namespace: str | None, label_selector: str = "") -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else None
        result = await self._call("GET", resource.path(namespace), query=query)
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        return await self._call("GET", resource.path(namespace, name))

    async def create(self, resource: Resource, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", resource.path(namespace), body=body)

    async def merge_patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        return await self._call(
            "PATCH", resource.path(namespace, name, subresource), body=patch, content_type=kube.MERGE_PATCH
        )

    async def delete(self, resource: Resource, namespace: str | None, name: str) -> None:
        try:
            await self._call("DELETE", resource.path(namespace, name))
        except NotFound:
            return

    async def close(self) -> None:
        await kube.close_session(self._session)


def _connection(kubeconfig: str | None) -> kube.Connection:
    """Where and how to reach the API server; raises ApiRejected when no credentials can be found."""
    try:
        if kubeconfig:
            return kube.from_kubeconfig(Path(kubeconfig))
        with contextlib.suppress(kube.KubeError):
            return kube.in_cluster()
        default = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(Path.home() / ".kube" / "config")
        return kube.from_kubeconfig(Path(default))
    except kube.KubeError as exc:
        raise ApiRejected(
            f"no Kubernetes credentials: {exc}; run in a pod with a ServiceAccount or set KUBECONFIG"
        ) from exc


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
]
