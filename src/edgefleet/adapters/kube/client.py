"""The asyncio Kubernetes REST client on aiohttp: one per process role, shared by operator, agent, CLI and sync.

Why not the official client: an edge device and a fleet simulator running thousands of devices as asyncio tasks
need something that is async, shares one connection pool per process (pass one
:func:`~edgefleet.adapters.kube.connection.new_session` to every :class:`Client`) and costs a few kilobytes per
device. It covers what edgefleet needs: discovery, get, paged list, create, merge patch (the status subresource
too), server-side apply, delete, Leases, and :meth:`Client.watch`, the one list-and-watch loop (bookmarks, resume
after a dropped connection, relist after 410 Gone) that every cache and follower in edgefleet is built on.

Errors are :mod:`edgefleet.core.errors` and nothing else: network trouble, timeouts, 429 and 5xx are
``TransientError``; 404 ``NotFoundError``; 409 ``ConflictError`` (re-read and retry); other 4xx (RBAC, an invalid
object) ``InvalidSpecError`` with reason ``Rejected``; a kind the cluster does not serve ``InvalidSpecError`` with
reason ``UnknownKind``. Each message says what failed, where and what to do. No aiohttp exception escapes.

MetaServer answers from its offline cache with a ``kind`` that can be spelled wrongly for multi-word kinds
(``Edgedevice``); every object the client returns carries its resource's kind, spelled right.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import aiohttp

from edgefleet.adapters.kube import connection as connections
from edgefleet.adapters.kube import resources
from edgefleet.adapters.kube.resources import JsonObject, Listing, Resource, WatchEvent
from edgefleet.core import errors

log = logging.getLogger(__name__)
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PAGE_SIZE = 500
"""Objects per LIST page, as client-go's reflector asks: each page is a short request, so a list of thousands of
objects never runs into a request timeout on a busy API server."""
WATCH_SECONDS = 300
RETRY_INITIAL_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
EVENT_COMPONENT = "edgefleet-operator"
EVENT_MESSAGE_BYTES = 1024


class _Expired(errors.TransientError):
    """410 Gone: a watch's resourceVersion or a list's continue token is too old. Handled inside this module (list
    again); should one escape, it is an ordinary transient error."""


def _timestamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _version(obj: JsonObject) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion") or None


class Client:
    """Async Kubernetes client over one :class:`~edgefleet.adapters.kube.connection.Connection`.

    ``counts``, when given, counts every request by verb (``LIST`` and ``WATCH`` apart from ``GET``).
    """

    def __init__(
        self,
        connection: connections.Connection,
        session: aiohttp.ClientSession,
        *,
        timeout_seconds: float = 30.0,
        counts: collections.Counter[str] | None = None,
        owns_session: bool = False,
    ) -> None:
        self.connection = connection
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds, sock_connect=min(timeout_seconds, 10.0))
        self.counts = counts
        self._owns_session = owns_session
        self._discovery: dict[str, dict[str, Resource]] = {}

    async def close(self) -> None:
        """Close the session if this client opened it (:func:`~edgefleet.adapters.kube.connect`)."""
        if self._owns_session:
            await connections.close_session(self.session)

    # --- one request ----------------------------------------------------------------------------------------------

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
    async def _raise_for(resp: aiohttp.ClientResponse, where: str) -> None:
        if resp.status < 400:
            return
        try:
            body = await resp.json(content_type=None)
        except (aiohttp.ClientError, ValueError):
            body = {}
        message = body.get("message") if isinstance(body, dict) else None
        if resp.status == 429 or resp.status >= 500:
            delay = float(resp.headers.get("Retry-After", "1") or 1)
            raise errors.TransientError(f"{where}: API server answered {resp.status} ({message}); retrying", delay)
        if resp.status == 404:
            hint = "; are the CRDs installed?" if "could not find the requested resource" in str(message) else ""
            raise errors.NotFoundError(f"{where}: not found ({message}){hint}")
        if resp.status == 409:
            raise errors.ConflictError(f"{where}: conflict ({message}); re-read the object and retry", delay=1.0)
        if resp.status == 410:
            raise _Expired(f"{where}: resourceVersion expired ({message}); list again", delay=0.0)
        if resp.status in (401, 403):
            raise errors.InvalidSpecError(
                f"{where}: {resp.status} {message}; check the credentials and the RBAC role of this identity",
                errors.Reason.REJECTED,
            )
        raise errors.InvalidSpecError(f"{where}: {resp.status} {message}", errors.Reason.REJECTED)

    def _count(self, verb: str) -> None:
        if self.counts is not None:
            self.counts[verb] += 1

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        kind: str | None = None,
        verb: str | None = None,
    ) -> JsonObject:
        """One request; returns the decoded JSON object (its ``kind`` repaired to ``kind``)."""
        self._count(verb or method)
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
                await self._raise_for(resp, f"{method} {path}")
                result = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise errors.TransientError(
                f"{method} {path}: API server {self.connection.server} unreachable ({type(exc).__name__}: {exc})",
                delay=1.0,
            ) from exc
        except ValueError as exc:
            raise errors.TransientError(f"{method} {path}: API server sent invalid JSON ({exc})", delay=1.0) from exc
        if not isinstance(result, dict):
            raise errors.TransientError(f"{method} {path}: API server sent a non-object answer", delay=1.0)
        return resources.fix_kind(result, kind)

    # --- objects --------------------------------------------------------------------------------------------------

    async def get(self, resource: Resource, namespace: str | None, name: str) -> JsonObject:
        """One object; raises NotFoundError when it does not exist."""
        return await self.request("GET", resource.path(namespace, name), kind=resource.kind)

    async def list(
        self,
        resource: Resource,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Listing:
        """Every object of ``resource`` in ``namespace`` (None: all namespaces), in pages of :data:`PAGE_SIZE`."""
        params = {"limit": str(PAGE_SIZE)}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        items: list[JsonObject] = []
        while True:
            try:
                page = await self.request("GET", resource.path(namespace), params=params, verb="LIST")
            except _Expired:
                params.pop("continue", None)  # the continue token expired mid-list: start over
                items = []
                continue
            for item in page.get("items") or []:
                item["kind"] = resource.kind  # list items come without one
                items.append(item)
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return Listing(items, str(meta.get("resourceVersion") or ""))
            params["continue"] = str(meta["continue"])

    async def create(self, resource: Resource, namespace: str | None, body: JsonObject) -> JsonObject:
        """Create an object; raises ConflictError when it exists."""
        return await self.request("POST", resource.path(namespace), body=body, kind=resource.kind)

    async def merge_patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: JsonObject,
        subresource: str | None = None,
    ) -> JsonObject:
        """JSON merge patch (RFC 7386), of the ``status`` subresource too; a ``metadata.resourceVersion`` in
        ``patch`` makes it conditional (ConflictError when the object changed)."""
        path = resource.path(namespace, name, subresource)
        return await self.request("PATCH", path, body=patch, content_type=MERGE_PATCH, kind=resource.kind)

    async def apply(
        self, resource: Resource, namespace: str | None, body: JsonObject, *, field_manager: str, force: bool = False
    ) -> JsonObject:
        """Server-side apply of ``body`` (fully specified intent, named by its ``metadata.name``) as
        ``field_manager``; ``force`` takes ownership of fields another manager owns."""
        params = {"fieldManager": field_manager, "force": "true" if force else "false"}
        path = resource.path(namespace, str(body["metadata"]["name"]))
        data = json.dumps(body).encode()
        return await self.request("PATCH", path, params=params, body=data, content_type=APPLY_PATCH, kind=resource.kind)

    async def delete(self, resource: Resource, namespace: str | None, name: str) -> bool:
        """Delete an object; returns False when it was already gone."""
        try:
            await self.request("DELETE", resource.path(namespace, name))
        except errors.NotFoundError:
            return False
        return True

    # --- discovery ------------------------------------------------------------------------------------------------

    async def discover(self, api_version: str, kind: str) -> Resource:
        """The resource serving ``kind`` in ``api_version``; raises InvalidSpecError (UnknownKind) when none does.

        Each group version is read once; a miss reads it again, since a CRD applied moments ago may not have been
        served at the first read.
        """
        for attempt in range(2):
            known = self._discovery.get(api_version)
            if known is None or attempt > 0:
                known = self._discovery[api_version] = await self._group_version(api_version)
            if kind in known:
                return known[kind]
        raise errors.InvalidSpecError(
            f"the cluster does not serve {kind} in {api_version}; install its CRD first", errors.Reason.UNKNOWN_KIND
        )

    async def _group_version(self, api_version: str) -> dict[str, Resource]:
        group, _, version = api_version.rpartition("/")
        try:
            doc = await self.request("GET", resources.group_version_path(group, version))
        except errors.NotFoundError:
            return {}
        return {
            str(r["kind"]): Resource(group, version, str(r["name"]), str(r["kind"]), bool(r.get("namespaced")))
            for r in doc.get("resources") or []
            if "/" not in str(r.get("name"))  # subresources (status, scale) are not kinds of their own
        }

    # --- list and watch -------------------------------------------------------------------------------------------

    async def watch(
        self,
        resource: Resource,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: int = WATCH_SECONDS,
        retry_initial_seconds: float = RETRY_INITIAL_SECONDS,
        retry_max_seconds: float = RETRY_MAX_SECONDS,
    ) -> AsyncIterator[resources.Change]:
        """The one list-and-watch loop, client-go's reflector in small. Runs until the consumer stops.

        Lists (yielding a :class:`Listing`), then watches from the list's version with bookmarks and yields every
        change. When the server ends a watch (``timeout_seconds``) or the connection drops (an API server restart, a
        device offline), it backs off (``retry_*``) and watches again from the last version it saw, so nothing is
        missed and nothing is listed again; only when that version expired (410 Gone) does it list again.
        ``resource_version`` starts with a watch from that version instead of a list.
        """
        version = resource_version
        delay = retry_initial_seconds
        while True:
            try:
                if not version:
                    listing = await self.list(
                        resource, namespace, label_selector=label_selector, field_selector=field_selector
                    )
                    version = listing.resource_version
                    yield listing
                params = {
                    "watch": "true",
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": str(timeout_seconds),
                    "resourceVersion": version,
                }
                if label_selector:
                    params["labelSelector"] = label_selector
                if field_selector:
                    params["fieldSelector"] = field_selector
                async with contextlib.aclosing(self._stream(resource, namespace, params, timeout_seconds)) as stream:
                    async for event in stream:
                        version = _version(event.object) or version
                        delay = retry_initial_seconds
                        if event.type != "BOOKMARK":
                            yield WatchEvent(event.type, event.object)
            except _Expired:
                version = None  # the version expired: start again from a fresh list
            except errors.EdgefleetError as exc:
                log.warning(
                    "Lost watch kind=%s namespace=%s selector=%s error=%s retry_in=%.1fs",
                    resource.kind,
                    namespace,
                    field_selector or label_selector or "",
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, retry_max_seconds)

    async def _stream(
        self, resource: Resource, namespace: str | None, params: Mapping[str, str], timeout_seconds: int
    ) -> AsyncGenerator[_RawEvent, None]:
        """One watch request: its events until the server closes it. Raises _Expired, TransientError, ..."""
        path = resource.path(namespace)
        self._count("WATCH")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=timeout_seconds + 30.0)
        try:
            async with self.session.get(
                self.connection.server + path,
                params=params,
                headers=self._headers(),
                ssl=self.connection.ssl_context if self.connection.ssl_context is not None else True,
                timeout=timeout,
            ) as resp:
                await self._raise_for(resp, f"WATCH {path}")
                buffer = b""
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            yield _RawEvent.parse(line, path, resource.kind)
                if buffer.strip():
                    yield _RawEvent.parse(buffer, path, resource.kind)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise errors.TransientError(
                f"WATCH {path}: connection to {self.connection.server} lost ({type(exc).__name__})", delay=1.0
            ) from exc

    # --- Leases: heartbeats that do not rewrite the object they are about -----------------------------------------

    async def renew_lease(
        self, namespace: str, name: str, holder: str, duration_seconds: int, now: dt.datetime
    ) -> JsonObject:
        """Create the Lease ``name`` or renew it (``renewTime`` = ``now``), as kubelet's node leases do."""
        spec = {"holderIdentity": holder, "leaseDurationSeconds": duration_seconds, "renewTime": _timestamp(now)}
        leases = resources.LEASES
        try:
            return await self.merge_patch(leases, namespace, name, {"spec": spec})
        except errors.NotFoundError:
            body = {
                "apiVersion": leases.api_version,
                "kind": leases.kind,
                "metadata": {"name": name, "namespace": namespace},
                "spec": spec | {"acquireTime": _timestamp(now)},
            }
            try:
                return await self.create(leases, namespace, body)
            except errors.ConflictError:
                return await self.merge_patch(leases, namespace, name, {"spec": spec})

    # --- Events: what ``kubectl describe`` shows -------------------------------------------------------------------

    async def record_event(
        self,
        involved: Mapping[str, Any],
        type_: str,
        reason: str,
        message: str,
        now: dt.datetime,
        *,
        component: str = EVENT_COMPONENT,
    ) -> None:
        """Post a core/v1 Event about ``involved`` (an object body or reference); failures are logged, not raised.

        Events are best effort, as in client-go's recorder: nothing fails because its Event could not be posted.
        """
        meta = involved.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        stamp = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": resources.EVENTS.api_version,
            "kind": resources.EVENTS.kind,
            "metadata": {"generateName": f"{meta.get('name', 'edgefleet')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", resources.MODELDEPLOYMENTS.api_version),
                "kind": involved.get("kind", resources.MODELDEPLOYMENTS.kind),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:EVENT_MESSAGE_BYTES],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": socket.gethostname()[:128],
        }
        try:
            await self.create(resources.EVENTS, namespace, body)
        except errors.EdgefleetError as exc:
            log.warning("Failed to post event reason=%s error=%s", reason, exc)


class _RawEvent:
    """A watch event as sent, bookmarks included; ERROR events are raised."""

    __slots__ = ("object", "type")

    def __init__(self, type_: Any, obj: JsonObject) -> None:
        self.type = type_
        self.object = obj

    @classmethod
    def parse(cls, line: bytes, path: str, kind: str) -> _RawEvent:
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise errors.TransientError(f"WATCH {path}: malformed event ({exc})", delay=1.0) from exc
        obj = event.get("object") or {}
        if event.get("type") == "ERROR":
            code = int(obj.get("code", 500))
            if code == 410:
                raise _Expired(f"WATCH {path}: {obj.get('message')}; list again", delay=0.0)
            raise errors.TransientError(f"WATCH {path}: error event {code} {obj.get('message')}", delay=1.0)
        if event.get("type") not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
            raise errors.TransientError(f"WATCH {path}: unknown event type {event.get('type')!r}", delay=1.0)
        if event["type"] != "BOOKMARK":
            resources.fix_kind(obj, kind)
        return cls(event["type"], obj)


def connect(connection: connections.Connection, *, timeout_seconds: float = 30.0) -> Client:
    """A client with a session of its own; create it inside the event loop that uses it, ``await close()`` after."""
    return Client(connection, connections.new_session(), timeout_seconds=timeout_seconds, owns_session=True)


__all__ = ["APPLY_PATCH", "MERGE_PATCH", "PAGE_SIZE", "WATCH_SECONDS", "Client", "connect"]
