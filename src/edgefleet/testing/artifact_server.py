"""A real HTTP artifact server on 127.0.0.1 (aiohttp in a background thread) with Range support.

Tests publish bytes under a path, optionally with faults: ``drop_after`` closes the connection after that many
body bytes on the next request (once), to prove downloads resume with ``Range``. Every request is recorded
(method, path, headers) so tests can assert what a device sent out.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from edgefleet.testing import background


@dataclasses.dataclass
class Published:
    data: bytes
    drop_after: int | None = None  # close the connection after this many body bytes (once)
    chunk_delay: float = 0.0  # pause between 32 KiB chunks (a slow link)


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]


class ArtifactServer:
    """Serve published byte strings; ``url(path)`` is where a device fetches them."""

    def __init__(self) -> None:
        self.files: dict[str, Published] = {}
        self.requests: list[Request] = []
        self.port = 0
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._background = background.BackgroundApp(app)

    def publish(self, path: str, data: bytes, *, drop_after: int | None = None, chunk_delay: float = 0.0) -> str:
        self.files[path.lstrip("/")] = Published(data, drop_after, chunk_delay)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Request(request.method, request.path, dict(request.headers)))
        item = self.files.get(request.path.lstrip("/"))
        if item is None:
            raise web.HTTPNotFound()
        data, start = item.data, 0
        status, headers = 200, {"Accept-Ranges": "bytes"}
        rng = request.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-", 1)[0])
            if start >= len(data):
                raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{len(data)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = len(body)
        await resp.prepare(request)
        if item.drop_after is not None:
            cut = item.drop_after
            item.drop_after = None
            await resp.write(body[:cut])
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.close()
            return resp
        for i in range(0, len(body), 32 * 1024):
            await resp.write(body[i : i + 32 * 1024])
            if item.chunk_delay:
                await asyncio.sleep(item.chunk_delay)
        await resp.write_eof()
        return resp

    def start(self) -> ArtifactServer:
        self.port = self._background.start()
        return self

    def stop(self) -> None:
        self._background.stop()


@contextmanager
def running() -> Iterator[ArtifactServer]:
    server = ArtifactServer().start()
    try:
        yield server
    finally:
        server.stop()
