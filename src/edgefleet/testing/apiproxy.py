"""A capturing, switchable stand-in for KubeEdge's MetaServer in front of a real kube-apiserver.

It listens on plain HTTP at 127.0.0.1 (as MetaServer does on an edge node), forwards every request over TLS with
the admin client certificate of the real control plane, streams responses (watches included) and records every
byte a client sends it (request line, headers, body) in :attr:`captured`. Tests can:

* ``await proxy.down()`` / ``await proxy.up()``: refuse connections and cut open ones (API server unreachable),
  then listen again on the same port;
* ``misspell_kind``: rewrite ``"kind":"EdgeDevice"`` to ``"kind":"Edgedevice"`` in responses, as MetaServer's
  offline cache does for multi-word kinds.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
from aiohttp import web

from edgefleet.adapters import kube

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"}


class ApiProxy:
    def __init__(self, kubeconfig: Path, *, misspell_kind: bool = False) -> None:
        self.upstream = kube.from_kubeconfig(kubeconfig)
        self.misspell_kind = misspell_kind
        self.captured: list[bytes] = []
        self.requests: list[tuple[str, str]] = []
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._open: set[asyncio.Task[object]] = set()
        self.is_up = False

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        head = f"{request.method} {request.path_qs} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in request.headers.items()
        )
        self.captured.append(head.encode() + b"\r\n" + body)
        self.requests.append((request.method, request.path_qs))
        task = asyncio.current_task()
        assert task is not None and self._session is not None
        self._open.add(task)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
            async with self._session.request(
                request.method,
                self.upstream.server + request.path_qs,
                data=body or None,
                headers=headers,
                ssl=self.upstream.ssl_context or True,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=600),
            ) as upstream:
                resp = web.StreamResponse(status=upstream.status)
                resp.content_type = upstream.content_type
                await resp.prepare(request)
                async for chunk in upstream.content.iter_any():
                    if self.misspell_kind:
                        chunk = chunk.replace(b'"kind":"EdgeDevice"', b'"kind":"Edgedevice"')
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
        finally:
            self._open.discard(task)

    async def up(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        self.is_up = True

    async def down(self) -> None:
        """Stop listening and cut every open request (watches included)."""
        self.is_up = False
        for task in list(self._open):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def close(self) -> None:
        await self.down()
        if self._session is not None:
            await kube.close_session(self._session)
