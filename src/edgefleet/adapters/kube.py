"""A small asyncio Kubernetes REST client on aiohttp, shared by the edge agent and the operator.

Why not the official client: an edge device and a fleet simulator running thousands of devices as asyncio tasks
need something that is async, shares one connection pool per process (pass one :func:`new_session` to every
:class:`Client`) and costs a few kilobytes per device. This client covers what edgefleet needs: get, list, watch
(``resourceVersion`` + bookmarks), create, merge-patch, server-side apply, the status subresource and
``coordination.k8s.io`` Leases.

Connections (:class:`Connection`) come from a kubeconfig (client certificates, CA data, bearer tokens), in-cluster
service-account credentials, or a plain-HTTP endpoint without credentials, which is what KubeEdge's MetaServer
offers on an edge node (``http://127.0.0.1:10550``). MetaServer answers from its offline cache with a ``kind``
that can be spelled wrongly for multi-word kinds (``Edgedevice``); pass ``kind=`` and the client repairs it.

Errors: network trouble, timeouts, 429 and 5xx become :class:`~edgefleet.core.errors.TransientError`; other HTTP
errors become :class:`KubeError` subclasses whose message says what failed, where and what to do. No aiohttp
exception escapes this module.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal

import aiohttp
import yaml

from edgefleet.core.errors import EdgefleetError, TransientError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
METASERVER = "http://127.0.0.1:10550"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
JsonObject = dict[str, Any]
Session = aiohttp.ClientSession  # so callers can type a shared session without importing aiohttp


class KubeError(EdgefleetError):
    """The API server refused a request for a reason retrying will not fix; ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFoundError(KubeError):
    """404: the object (or the resource type: are the CRDs installed?) does not exist."""


class ConflictError(KubeError):
    """409: already exists, or the resourceVersion is stale; re-read and retry."""


class GoneError(KubeError):
    """410: a watch's resourceVersion is too old; list again."""


@dataclasses.dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate. ``token_file`` is re-read (bound tokens rotate)."""

    server: str
    ssl_context: ssl.SSLContext | None = None
    token: str | None = None
    token_file: Path | None = None
    namespace: str = "default"
    impersonate_user: str | None = None  # act as this user (needs the "impersonate" verb), e.g. in RBAC tests

    def bearer(self) -> str | None:
        if self.token_file is not None:
            try:
                return self.token_file.read_text().strip()
            except OSError as exc:
                raise TransientError(f"cannot read the service-account token {self.token_file}: {exc}") from exc
        return self.token


def plain(server: str = METASERVER, namespace: str = "default") -> Connection:
    """A plain-HTTP endpoint without credentials (KubeEdge MetaServer, ``kubectl proxy``)."""
    return Connection(server=server.rstrip("/"), namespace=namespace)


def in_cluster(root: Path = SERVICE_ACCOUNT) -> Connection:
    """The pod's service account: ``KUBERNETES_SERVICE_HOST``/``_PORT``, its CA, token and namespace."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not (root / "token").exists():
        raise KubeError(
            f"not running in a pod: KUBERNETES_SERVICE_HOST or {root / 'token'} is missing; "
            "configure a kubeconfig or a plain endpoint instead",
            0,
        )
    context = ssl.create_default_context(cafile=str(root / "ca.crt"))
    namespace = (root / "namespace").read_text().strip() if (root / "namespace").exists() else "default"
    if ":" in host:
        host = f"[{host}]"
    return Connection(f"https://{host}:{port}", context, token_file=root / "token", namespace=namespace)


def _data_or_file(entry: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        return (base / str(entry[key])).read_bytes()
    return None


def from_kubeconfig(path: Path, context: str | None = None) -> Connection:
    """Load a kubeconfig (safe YAML): server, CA, client certificate/key, bearer token, namespace."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise KubeError(f"{path}: cannot read the kubeconfig: {exc}", 0) from exc

    def named(section: str, name: str) -> JsonObject:
        for item in doc.get(section) or []:
            if item.get("name") == name:
                return dict(item.get(section[:-1]) or {})
        raise KubeError(f"{path}: {section} has no entry named {name!r}", 0)

    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise KubeError(f"{path}: no current-context; pass a context name", 0)
    ctx = named("contexts", ctx_name)
    cluster = named("clusters", ctx["cluster"])
    user = named("users", ctx["user"]) if ctx.get("user") else {}
    base = path.parent
    server = str(cluster["server"]).rstrip("/")
    ssl_context: ssl.SSLContext | None = None
    if server.startswith("https://"):
        ca = _data_or_file(cluster, "certificate-authority", base)
        ssl_context = ssl.create_default_context(cadata=ca.decode() if ca else None)
        if cluster.get("insecure-skip-tls-verify"):
            ssl_context.check_hostname = False
            ssl_context.verify_mode = ssl.CERT_NONE
        cert = _data_or_file(user, "client-certificate", base)
        key = _data_or_file(user, "client-key", base)
        if cert and key:
            # ssl only loads certificate chains from files: write them to a private directory, load, delete.
            with tempfile.TemporaryDirectory(prefix="edgefleet-kube-") as tmp:
                cert_path, key_path = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
                for p, data in ((cert_path, cert), (key_path, key)):
                    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
                ssl_context.load_cert_chain(str(cert_path), str(key_path))
    token = user.get("token")
    token_file = Path(base / user["tokenFile"]) if user.get("tokenFile") else None
    return Connection(server, ssl_context, token, token_file, ctx.get("namespace") or "default")


# --- resource paths -------------------------------------------------------------------------------------------


def custom_path(group: str, version: str, plural: str, namespace: str | None = None, name: str | None = None) -> str:
    """Path of a custom resource collection or object (pure).

    >>> custom_path("edgefleet.io", "v1alpha1", "edgedevices", "factory-1", "cam-7")
    '/apis/edgefleet.io/v1alpha1/namespaces/factory-1/edgedevices/cam-7'
    """
    ns = f"/namespaces/{namespace}" if namespace else ""
    return f"/apis/{group}/{version}{ns}/{plural}" + (f"/{name}" if name else "")


def core_path(plural: str, namespace: str | None = None, name: str | None = None) -> str:
    """Path of a core (``/api/v1``) collection or object (pure).

    >>> core_path("secrets", "default", "keys")
    '/api/v1/namespaces/default/secrets/keys'
    """
    ns = f"/namespaces/{namespace}" if namespace else ""
    return f"/api/v1{ns}/{plural}" + (f"/{name}" if name else "")


def lease_path(namespace: str, name: str | None = None) -> str:
    """Path of a ``coordination.k8s.io/v1`` Lease (pure)."""
    return custom_path("coordination.k8s.io", "v1", "leases", namespace, name)


def fix_kind(obj: JsonObject, kind: str | None) -> JsonObject:
    """Repair a ``kind`` that differs from the expected one only in case (MetaServer's cache) (pure).

    >>> fix_kind({"kind": "Edgedevice"}, "EdgeDevice")["kind"]
    'EdgeDevice'
    """
    if kind is not None and str(obj.get("kind", kind)).lower() == kind.lower():
        obj["kind"] = kind
    return obj


@dataclasses.dataclass(frozen=True)
class WatchEvent:
    """One watch event: ADDED, MODIFIED, DELETED or BOOKMARK (ERROR events are raised)."""

    type: Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
    object: JsonObject


def new_session(limit: int = 0) -> aiohttp.ClientSession:
    """One pooled session per process; every Client (every simulated device) can share it.

    ``limit`` 0 means no cap on open connections: each watch holds one connection for its whole life, so a process
    simulating N devices needs N of them plus a few for requests (a cap would starve watches silently).
    """
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, keepalive_timeout=60))


async def close_session(session: aiohttp.ClientSession) -> None:
    """Close a session gracefully: TLS connections finish their shutdown during the short pause (aiohttp's
    documented graceful shutdown), so no transport is left for the garbage collector."""
    await session.close()
    await asyncio.sleep(0.25)


def _timestamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Client:
    """Async Kubernetes REST client over one :class:`Connection`."""

    def __init__(
        self, connection: Connection, session: aiohttp.ClientSession, *, timeout_seconds: float = 30.0
    ) -> None:
        self.connection = connection
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds, sock_connect=min(timeout_seconds, 10.0))

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers: dict[str, str] = {"Accept": "application/json"}
        token = self.connection.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        if self.connection.impersonate_user:
            headers["Impersonate-User"] = self.connection.impersonate_user
        return headers

    @staticmethod
    async def _raise_for(resp: aiohttp.ClientResponse, method: str, path: str) -> None:
        if resp.status < 400:
            return
        try:
            body = await resp.json(content_type=None)
        except (aiohttp.ClientError, ValueError):
            body = {}
        message = body.get("message") if isinstance(body, dict) else None
        reason = str(body.get("reason", "")) if isinstance(body, dict) else ""
        where = f"{method} {path}"
        if resp.status == 429 or resp.status >= 500:
            delay = float(resp.headers.get("Retry-After", "1") or 1)
            raise TransientError(f"{where}: API server answered {resp.status} ({message}); retrying", delay=delay)
        if resp.status == 404:
            hint = "; are the CRDs installed?" if "could not find the requested resource" in str(message) else ""
            raise NotFoundError(f"{where}: not found ({message}){hint}", 404, reason)
        if resp.status == 409:
            raise ConflictError(f"{where}: conflict ({message}); re-read the object and retry", 409, reason)
        if resp.status == 410:
            raise GoneError(f"{where}: resourceVersion expired ({message}); list again", 410, reason)
        if resp.status in (401, 403):
            raise KubeError(
                f"{where}: {resp.status} {message}; check the credentials and the RBAC role of this identity",
                resp.status,
                reason,
            )
        raise KubeError(f"{where}: {resp.status} {message}", resp.status, reason)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        kind: str | None = None,
    ) -> JsonObject:
        """One request; returns the decoded JSON object."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            async with self.session.request(
                method,
                self.connection.server + path,
                params=params,
                data=data,
                headers=self._headers(content_type if data is not None else None),
                ssl=self.connection.ssl_context if self.connection.ssl_context is not None else True,
                timeout=self.timeout,
            ) as resp:
                await self._raise_for(resp, method, path)
                result = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientError(
                f"{method} {path}: API server {self.connection.server} unreachable ({type(exc).__name__}: {exc})",
                delay=1.0,
            ) from exc
        except ValueError as exc:
            raise TransientError(f"{method} {path}: API server sent invalid JSON ({exc})", delay=1.0) from exc
        if not isinstance(result, dict):
            raise TransientError(f"{method} {path}: API server sent a non-object answer", delay=1.0)
        return fix_kind(result, kind)

    async def get(self, path: str, *, kind: str | None = None) -> JsonObject:
        """GET one object; raises NotFoundError when it does not exist."""
        return await self.request("GET", path, kind=kind)

    async def list(
        self,
        path: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        kind: str | None = None,
    ) -> JsonObject:
        """LIST a collection; each item's ``kind`` is set (list items come without one)."""
        params = {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}
        result = await self.request("GET", path, params=params)
        for item in result.get("items") or []:
            if kind is not None:
                item["kind"] = kind
        return result

    async def create(self, path: str, body: JsonObject, *, kind: str | None = None) -> JsonObject:
        """POST a new object into the collection at ``path``."""
        return await self.request("POST", path, body=body, kind=kind)

    async def merge_patch(self, path: str, patch: JsonObject, *, kind: str | None = None) -> JsonObject:
        """JSON merge patch (RFC 7386) of an object."""
        return await self.request("PATCH", path, body=patch, content_type=MERGE_PATCH, kind=kind)

    async def patch_status(self, path: str, status: JsonObject, *, kind: str | None = None) -> JsonObject:
        """Merge-patch ``status`` through the status subresource (spec is never touched)."""
        return await self.request(
            "PATCH", path + "/status", body={"status": status}, content_type=MERGE_PATCH, kind=kind
        )

    async def apply(
        self, path: str, body: JsonObject, *, field_manager: str, force: bool = True, kind: str | None = None
    ) -> JsonObject:
        """Server-side apply of ``body`` (fully specified intent) as ``field_manager``."""
        params = {"fieldManager": field_manager, "force": "true" if force else "false"}
        return await self.request(
            "PATCH", path, params=params, body=json.dumps(body).encode(), content_type=APPLY_PATCH, kind=kind
        )

    async def watch(
        self,
        path: str,
        *,
        resource_version: str | None = None,
        field_selector: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
        kind: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Stream watch events from ``resource_version`` with bookmarks; ends when the server closes the watch.

        Raises GoneError when the version expired (list again) and TransientError on network trouble.
        """
        params = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_seconds)}
        if resource_version:
            params["resourceVersion"] = resource_version
        if field_selector:
            params["fieldSelector"] = field_selector
        if label_selector:
            params["labelSelector"] = label_selector
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=timeout_seconds + 30.0)
        try:
            async with self.session.get(
                self.connection.server + path,
                params=params,
                headers=self._headers(),
                ssl=self.connection.ssl_context if self.connection.ssl_context is not None else True,
                timeout=timeout,
            ) as resp:
                await self._raise_for(resp, "WATCH", path)
                buffer = b""
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            yield self._event(line, path, kind)
                if buffer.strip():
                    yield self._event(buffer, path, kind)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientError(
                f"WATCH {path}: connection to {self.connection.server} lost ({type(exc).__name__})", delay=1.0
            ) from exc

    @staticmethod
    def _event(line: bytes, path: str, kind: str | None) -> WatchEvent:
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise TransientError(f"WATCH {path}: malformed event ({exc})", delay=1.0) from exc
        obj = event.get("object") or {}
        if event.get("type") == "ERROR":
            code = int(obj.get("code", 500))
            if code == 410:
                raise GoneError(f"WATCH {path}: {obj.get('message')}; list again", 410, "Expired")
            raise TransientError(f"WATCH {path}: error event {code} {obj.get('message')}", delay=1.0)
        if event.get("type") != "BOOKMARK":
            fix_kind(obj, kind)
        return WatchEvent(event["type"], obj)

    # --- Leases: heartbeats that do not rewrite the object they are about --------------------------------------

    async def renew_lease(
        self, namespace: str, name: str, holder: str, duration_seconds: int, now: dt.datetime
    ) -> JsonObject:
        """Create the Lease ``name`` or renew it (``renewTime`` = ``now``), as kubelet's node leases do."""
        spec = {"holderIdentity": holder, "leaseDurationSeconds": duration_seconds, "renewTime": _timestamp(now)}
        try:
            return await self.merge_patch(lease_path(namespace, name), {"spec": spec}, kind="Lease")
        except NotFoundError:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": namespace},
                "spec": spec | {"acquireTime": _timestamp(now)},
            }
            try:
                return await self.create(lease_path(namespace), body, kind="Lease")
            except ConflictError:
                return await self.merge_patch(lease_path(namespace, name), {"spec": spec}, kind="Lease")


__all__ = [
    "METASERVER",
    "Client",
    "ConflictError",
    "Connection",
    "GoneError",
    "KubeError",
    "NotFoundError",
    "Session",
    "WatchEvent",
    "close_session",
    "core_path",
    "custom_path",
    "fix_kind",
    "from_kubeconfig",
    "in_cluster",
    "lease_path",
    "new_session",
    "plain",
]
