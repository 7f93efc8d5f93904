"""Issue 18, the fetchers and the store against real HTTP servers on 127.0.0.1: the address policy at connect time
(also after redirects), messages that do not echo what a server sent, a server repeating a range, and the store's
Range parsing (cases 6, 9 and the minor ones)."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from edgefleet.adapters import artifacts, store
from edgefleet.api import addresses
from edgefleet.compiler import sources
from edgefleet.core import errors
from edgefleet.testing.badinput import COUNTS as tried

LOOPBACK = addresses.FetchPolicy(frozenset({"loopback"}))
STRICT = addresses.FetchPolicy()
PAYLOAD = b"model bytes " * 100


@contextlib.contextmanager
def redirecting() -> Iterator[tuple[str, list[str]]]:
    """A server where ``/to?<target>`` redirects to the target and ``/ok`` serves PAYLOAD; records every path."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            if self.path.startswith("/to?"):
                self.send_response(302)
                self.send_header("Location", self.path[4:])
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_sources_fetch_checks_the_connected_address_and_every_redirect() -> None:
    with redirecting() as (base, seen):
        port = base.rsplit(":", 1)[1]
        assert sources.fetch(f"{base}/ok", SHA, policy=LOOPBACK) == PAYLOAD
        refused = {
            # Without the loopback allowance: the literal is refused at connect, the name at resolve.
            (f"{base}/ok", STRICT): "loopback address 127.0.0.1 is not fetched here",
            (f"http://localhost:{port}/ok", STRICT): "local host",
            # With it: redirects to metadata, to a numeric form, to another scheme are refused before connecting.
            (f"{base}/to?http://169.254.169.254/latest/meta-data", LOOPBACK): "link-local",
            (f"{base}/to?http://0x7f000001:{port}/ok", LOOPBACK): "canonical dotted quad",
            (f"{base}/to?http://[::ffff:169.254.169.254]/", LOOPBACK): "IPv4-mapped",
            (f"{base}/to?file:///etc/passwd", LOOPBACK): "redirect not followed",
            (f"{base}/to?http://metadata.google.internal/x", LOOPBACK): "metadata name",
        }
        for (uri, policy), reason in refused.items():
            tried["hostile fetch targets"] += 1
            with pytest.raises(errors.InvalidSpecError, match=reason) as info:
                sources.fetch(uri, SHA, policy=policy)
            assert info.value.reason == errors.Reason.SOURCE_FORBIDDEN
        # A redirect to an allowed place is followed; a loop ends at the redirect limit, not in a hang.
        assert sources.fetch(f"{base}/to?{base}/ok", SHA, policy=LOOPBACK) == PAYLOAD
        with pytest.raises(errors.InvalidSpecError, match="redirect not followed"):
            sources.fetch(
                f"{base}/to?{base}/to?{base}/to?{base}/to?{base}/to?{base}/to?{base}/ok", SHA, policy=LOOPBACK
            )
    assert not [p for p in seen if "169.254" in p and not p.startswith("/to?")]


def test_source_digest_mismatch_does_not_echo_the_fetched_digest_or_size() -> None:
    with redirecting() as (base, _), pytest.raises(errors.InvalidSpecError) as info:
        sources.fetch(f"{base}/ok", "0" * 64, policy=LOOPBACK)
    tried["oracle messages"] += 1
    assert SHA not in str(info.value) and str(len(PAYLOAD)) not in str(info.value)


async def test_artifact_download_checks_names_literals_and_the_connecting_socket(tmp_path: Path) -> None:
    with redirecting() as (base, seen):
        port = base.rsplit(":", 1)[1]
        size = len(PAYLOAD)
        async with artifacts.new_session(policy=LOOPBACK) as session:
            await artifacts.download(session, f"{base}/ok", tmp_path / "a", size, policy=LOOPBACK)
            assert (tmp_path / "a").read_bytes() == PAYLOAD
        cases = {
            # A strict device: the literal before anything is sent, the name when it resolves to loopback.
            (f"{base}/ok", "strict", "strict"): "loopback address",
            (f"http://localhost:{port}/ok", "strict", "strict"): "local host",
            # The socket factory: even if the pre-checks allowed it, the socket to a forbidden address is not made.
            (f"{base}/ok", "strict", "loopback"): "loopback address",
            (f"http://0x7f000001:{port}/ok", "loopback", "loopback"): "canonical dotted quad",
            (f"{base}/to?{base}/ok", "loopback", "loopback"): "answered 302",
        }
        before = len(seen)
        for (uri, session_policy, call_policy), reason in cases.items():
            tried["hostile fetch targets"] += 1
            policy = LOOPBACK if session_policy == "loopback" else STRICT
            async with artifacts.new_session(policy=policy) as session:
                with pytest.raises(errors.InvalidSpecError, match=reason):
                    await artifacts.download(
                        session, uri, tmp_path / "b", size, policy=LOOPBACK if call_policy == "loopback" else STRICT
                    )
        assert seen[before:] == ["/to?" + f"{base}/ok"]  # only the redirect itself reached the server


@contextlib.asynccontextmanager
async def range_server(mode: str) -> Iterator[str]:  # type: ignore[misc]
    data = bytes(range(256)) * 64

    async def handle(request: web.Request) -> web.StreamResponse:
        rng = request.headers.get("Range")
        if rng and mode == "repeat":  # answers the first 1,000 bytes again, whatever was asked
            return web.Response(status=206, body=data[:1000], headers={"Content-Range": f"bytes 0-999/{len(data)}"})
        if not rng:  # the first response is cut short, so the client resumes
            resp = web.StreamResponse(headers={"Content-Length": str(len(data))})
            await resp.prepare(request)
            await resp.write(data[:1000])
            request.transport.close()  # type: ignore[union-attr]
            return resp
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/a", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/a"
    finally:
        await runner.cleanup()


async def test_a_repeated_range_is_not_appended(tmp_path: Path) -> None:
    dest = tmp_path / "part"
    async with range_server("repeat") as url, artifacts.new_session(policy=LOOPBACK) as session:
        with pytest.raises(errors.TransientError):
            await artifacts.download(session, url, dest, 256 * 64, policy=LOOPBACK)
        assert dest.stat().st_size == 1000
        with pytest.raises(errors.TransientError, match="different range"):
            await artifacts.download(session, url, dest, 256 * 64, policy=LOOPBACK)
        assert not dest.exists()  # restarted, never glued 0-999 after 0-999
    tried["hostile servers"] += 1


async def test_store_range_parsing_is_bounded_and_ascii_only(tmp_path: Path) -> None:
    local = store.LocalStore(tmp_path / "store", "http://127.0.0.1")
    stored = local.put_sync(b"x" * 1000)
    runner = await store.serve(local, "127.0.0.1", 0)
    try:
        port = store.bound_port(runner)
        url = f"http://127.0.0.1:{port}{store.PREFIX}{store.hex_of(stored.digest)}"
        cases = {
            "bytes=" + "9" * 5000 + "-": 416,
            "bytes=0-" + "9" * 5000: 206,
            "bytes=-" + "9" * 5000: 206,
            "bytes=\u0661\u0660-\u0669\u0669": 200,
            "bytes=\uff11-\uff19": 200,
            "bytes=10-99": 206,
        }
        got = {}
        async with aiohttp.ClientSession() as http:
            for header, _ in cases.items():
                async with http.get(url, headers={"Range": header.encode("utf-8").decode("latin-1")}) as resp:
                    got[header] = resp.status
                    await resp.read()
        tried["hostile Range headers"] += len(cases)
        assert got == cases
    finally:
        await runner.cleanup()
