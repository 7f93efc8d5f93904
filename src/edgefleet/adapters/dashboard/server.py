"""The dashboard's HTTP server: the page, its static assets, a JSON snapshot and a server-sent-event stream.

Read-only by construction: the only routes answer ``GET`` (and ``HEAD``); anything else is 405. The page is plain
JavaScript shipped in the package (``static/``), loaded from this server alone; every response carries a
Content-Security-Policy without inline scripts or styles (:data:`CSP`) and the usual hardening headers, so even a
value from the cluster that slipped into markup could not run. The page builds its DOM with ``textContent`` and
never parses cluster data as HTML.

The browser talks only to this server; this server talks to the API server with the user's credentials
(:class:`~edgefleet.adapters.dashboard.cache.FleetCache`), which never leave it. Bound to loopback, it also
checks the ``Host`` header, so a web page that rebinds its DNS name to 127.0.0.1 cannot read the fleet through the
user's browser.

Routes: ``/`` (the page), ``/static/<file>``, ``/api/snapshot`` (JSON: everything one page shows), ``/api/stream``
(``text/event-stream``: a ``snapshot`` event, then ``update`` events with what changed), ``/healthz``. Both API routes
take ``lines`` (comma-separated ``site/line`` keys, ``*`` for every line, ``auto`` for every line while the fleet has
at most ``expand_below`` devices), ``device`` and ``deployment`` (``namespace/name``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from edgefleet.adapters.dashboard import cache, pages

log = logging.getLogger(__name__)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
MAX_PARAM = 4096
MAX_LINES = 512
MAX_STREAMS = 64
KEEPALIVE_SECONDS = 15.0
CACHE_KEY: web.AppKey[cache.FleetCache] = web.AppKey("cache", cache.FleetCache)
HOSTS_KEY: web.AppKey[set[str] | None] = web.AppKey("hosts")
STREAMS_KEY: web.AppKey[set[web.StreamResponse]] = web.AppKey("streams")


def is_loopback(address: str) -> bool:
    """Whether binding to ``address`` keeps the server to this machine (pure).

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def loopback_hosts(port: int) -> set[str]:
    """The ``Host`` headers a browser sends to a loopback server on ``port`` (pure)."""
    return {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}


def _asset(name: str) -> bytes:
    return importlib.resources.files("edgefleet.adapters.dashboard").joinpath("static", name).read_bytes()


class BadRequest(ValueError):
    pass


def subscription(query: Any) -> pages.Subscription:
    """A :class:`~edgefleet.adapters.dashboard.pages.Subscription` from the query string; raises BadRequest."""
    for key in ("lines", "device", "deployment"):
        if len(query.get(key, "")) > MAX_PARAM:
            raise BadRequest(f"query parameter {key} is longer than {MAX_PARAM} characters")
    raw = query.get("lines", "")
    lines = [x for x in raw.split(",") if x] if raw not in ("*", "auto") else []
    if len(lines) > MAX_LINES:
        raise BadRequest(f"at most {MAX_LINES} lines can be expanded at once (got {len(lines)})")
    ids = {key: query.get(key) or None for key in ("device", "deployment")}
    for key, value in ids.items():
        if value is not None and value.count("/") != 1:
            raise BadRequest(f"query parameter {key} must be namespace/name (got {value[:80]!r})")
    return pages.Subscription(
        lines=frozenset(lines), all_lines=raw == "*", device=ids["device"], deployment=ids["deployment"]
    )


def _json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


# --- handlers --------------------------------------------------------------------------------------------------------


async def index(_request: web.Request) -> web.Response:
    return web.Response(body=_asset("index.html"), content_type="text/html", charset="utf-8")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:  # a fixed list: nothing else in the package (or above it) can be asked for
        raise web.HTTPNotFound(text="no such asset\n")
    return web.Response(body=_asset(name), headers={"Content-Type": STATIC[name], "Cache-Control": "no-cache"})


async def healthz(request: web.Request) -> web.Response:
    synced = request.app[CACHE_KEY].synced()
    ok = synced["devices"] and synced["deployments"]
    return web.json_response(synced, status=200 if ok else 503)


async def snapshot(request: web.Request) -> web.Response:
    try:
        sub = subscription(request.query)
    except BadRequest as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None
    fleet = request.app[CACHE_KEY]
    if request.query.get("lines") == "auto":
        sub.all_lines = fleet.summary.total <= fleet.expand_below
    body = _json(pages.snapshot(fleet, sub))
    return web.Response(text=body, content_type="application/json", headers={"Cache-Control": "no-store"})


def _event(name: str, data: Any) -> bytes:
    # json.dumps escapes newlines inside strings, so one event is one data line.
    return f"event: {name}\ndata: {_json(data)}\n\n".encode()


async def stream(request: web.Request) -> web.StreamResponse:
    fleet = request.app[CACHE_KEY]
    streams = request.app[STREAMS_KEY]
    try:
        sub = subscription(request.query)
    except BadRequest as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None
    if request.query.get("lines") == "auto":  # every tile at once while the fleet is small enough
        sub.all_lines = fleet.summary.total <= fleet.expand_below
    if len(streams) >= MAX_STREAMS:
        raise web.HTTPServiceUnavailable(text=f"more than {MAX_STREAMS} pages are open; close some\n")
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    streams.add(response)
    fleet.subscribe(sub)
    try:
        await response.write(b"retry: 2000\n\n" + _event("snapshot", pages.snapshot(fleet, sub)))
        while not (sub.dropped and sub.queue.empty()):  # a dropped page reconnects and starts from a snapshot
            try:
                message = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if message is None:
                break
            await response.write(_event("update", message))
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the page went away, or the server is stopping
    finally:
        fleet.unsubscribe(sub)
        streams.discard(response)
    return response


# --- the application -------------------------------------------------------------------------------------------------


@web.middleware
async def guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Read-only, and only for the host names this server is known by."""
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"], text="the dashboard is read-only\n")
    hosts = request.app[HOSTS_KEY]
    if hosts is not None and request.host not in hosts:
        raise web.HTTPMisdirectedRequest(text=f"unexpected Host header {request.host[:100]!r}\n")
    return await handler(request)


async def _harden(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


async def _close_streams(app: web.Application) -> None:
    """End every open stream, so stopping the server does not wait for pages to go away."""
    for sub in list(app[CACHE_KEY].subscribers):
        with contextlib.suppress(asyncio.QueueFull):
            sub.queue.put_nowait(None)


def application(fleet: cache.FleetCache, hosts: set[str] | None) -> web.Application:
    """The dashboard app over ``fleet``; ``hosts`` are the accepted ``Host`` headers (None: any)."""
    app = web.Application(middlewares=[guard], client_max_size=1024)
    app[CACHE_KEY] = fleet
    app[HOSTS_KEY] = hosts
    app[STREAMS_KEY] = set()
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/api/stream", stream)
    app.on_response_prepare.append(_harden)
    app.on_shutdown.append(_close_streams)
    return app


class Server:
    """The dashboard app served on ``address:port`` (0: a free port, see :attr:`port` after :meth:`start`)."""

    def __init__(self, fleet: cache.FleetCache, address: str, port: int, *, check_host: bool) -> None:
        self.fleet, self.address, self.requested_port, self.check_host = fleet, address, port, check_host
        self.port = port
        self._hosts: set[str] | None = set() if check_host else None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        app = application(self.fleet, self._hosts)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address, self.requested_port)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        if self._hosts is not None:
            self._hosts |= loopback_hosts(self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


__all__ = [
    "CSP",
    "SECURITY_HEADERS",
    "BadRequest",
    "Server",
    "application",
    "is_loopback",
    "loopback_hosts",
    "subscription",
]
