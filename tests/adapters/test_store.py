"""The artifact store against a real aiohttp server on 127.0.0.1: ranges, 416, ETags, traversal attempts."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from edgefleet.adapters import bundle, store

BLOB = bytes(range(256)) * 40 + b"tail"  # 10244 bytes


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[store.LocalStore, str]]:
    local = store.LocalStore(tmp_path / "artifacts", "http://placeholder")
    runner = await store.serve(local, "127.0.0.1", 0, metrics=True)
    base = f"http://127.0.0.1:{store.bound_port(runner)}"
    local.base_url = base
    try:
        yield local, base
    finally:
        await runner.cleanup()


async def raw_get(base: str, target: str) -> tuple[int, bytes]:
    """Send the request line exactly as written (no client-side path normalisation)."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    status = int(response.split(b" ", 2)[1])
    return status, response.split(b"\r\n\r\n", 1)[1]


async def test_put_is_content_addressed_idempotent_and_atomic(tmp_path: Path) -> None:
    local = store.LocalStore(tmp_path, "http://store:8080")
    first = await local.put(BLOB)
    again = await local.put(BLOB)
    assert first == again
    assert first.digest == "sha256:" + hashlib.sha256(BLOB).hexdigest()
    assert first.uri == f"http://store:8080/artifacts/sha256/{first.digest[7:]}"
    assert await local.get(first.digest) == BLOB and await local.has(first.digest)
    assert sorted(p.name for p in (tmp_path / "sha256").iterdir()) == [first.digest[7:]], "no temporary files left"
    assert not os.access(local.path(first.digest), os.W_OK) or os.geteuid() == 0
    with pytest.raises(KeyError):
        await local.get("sha256:" + "0" * 64)


async def test_a_name_is_never_overwritten_with_other_bytes(tmp_path: Path) -> None:
    local = store.LocalStore(tmp_path, "http://store:8080")
    stored = await local.put(BLOB)
    path = local.path(stored.digest)
    path.chmod(0o644)
    path.write_bytes(b"tampered")
    with pytest.raises(store.StoreError, match="corrupt store"):
        await local.put(BLOB)
    assert path.read_bytes() == b"tampered", "the store reports corruption instead of rewriting the file"
    with pytest.raises(store.StoreError, match="does not match its digest"):
        await local.get(stored.digest)


async def test_bad_digests_are_rejected(tmp_path: Path) -> None:
    local = store.LocalStore(tmp_path, "http://store:8080")
    for digest in ("sha256:../../etc/passwd", "md5:" + "a" * 32, "sha256:" + "A" * 64):
        with pytest.raises(ValueError, match="not a sha256 digest"):
            local.path(digest)


async def test_full_download_with_etag_and_304(served: tuple[store.LocalStore, str]) -> None:
    local, _base = served
    stored = await local.put(BLOB)
    async with aiohttp.ClientSession() as session:
        async with session.get(stored.uri) as resp:
            assert resp.status == 200
            assert await resp.read() == BLOB
            assert resp.headers["ETag"] == f'"{stored.digest}"'
            assert resp.headers["Accept-Ranges"] == "bytes"
            assert resp.headers["Content-Type"] == store.CONTENT_TYPE
        async with session.get(stored.uri, headers={"If-None-Match": f'"{stored.digest}"'}) as resp:
            assert resp.status == 304
        async with session.head(stored.uri) as resp:
            assert resp.status == 200 and resp.headers["Content-Length"] == str(len(BLOB))
            assert await resp.read() == b""


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=10000-", 10000, len(BLOB) - 1),
        ("bytes=-4", len(BLOB) - 4, len(BLOB) - 1),
        ("bytes=5-999999", 5, len(BLOB) - 1),
    ],
)
async def test_range_requests_return_206_with_the_exact_slice(
    served: tuple[store.LocalStore, str], header: str, first: int, last: int
) -> None:
    local, _ = served
    stored = await local.put(BLOB)
    async with aiohttp.ClientSession() as session, session.get(stored.uri, headers={"Range": header}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes {first}-{last}/{len(BLOB)}"
        assert await resp.read() == BLOB[first : last + 1]


async def test_resuming_an_interrupted_download_reassembles_the_bundle(
    served: tuple[store.LocalStore, str],
) -> None:
    local, _ = served
    key = bundle.generate_key()
    digest, data = bundle.build({"schemaVersion": 1, "model": {"name": "m"}}, os.urandom(300_000), key)
    stored = await local.put(data)
    assert stored.digest == digest
    received = b""
    async with aiohttp.ClientSession() as session:
        async with session.get(stored.uri) as resp:
            received = await resp.content.read(100_000)  # the connection "drops" here
        async with session.get(
            stored.uri, headers={"Range": f"bytes={len(received)}-", "If-Range": f'"{digest}"'}
        ) as resp:
            assert resp.status == 206
            received += await resp.read()
    opened = bundle.open_bundle(received, [key.public_key()], expected_digest=digest)
    assert opened.manifest["model"] == {"name": "m"}


async def test_unsatisfiable_range_is_416_and_stale_if_range_gets_the_whole_body(
    served: tuple[store.LocalStore, str],
) -> None:
    local, _ = served
    stored = await local.put(BLOB)
    async with aiohttp.ClientSession() as session:
        async with session.get(stored.uri, headers={"Range": f"bytes={len(BLOB)}-"}) as resp:
            assert resp.status == 416
            assert resp.headers["Content-Range"] == f"bytes */{len(BLOB)}"
        async with session.get(stored.uri, headers={"Range": "bytes=0-9", "If-Range": '"sha256:other"'}) as resp:
            assert resp.status == 200 and await resp.read() == BLOB
        async with session.get(stored.uri, headers={"Range": "bytes=0-1,4-5"}) as resp:
            assert resp.status == 200 and await resp.read() == BLOB


@pytest.mark.parametrize(
    "target",
    [
        "/artifacts/sha256/../../../../etc/passwd",
        "/artifacts/sha256/..%2f..%2f..%2fetc%2fpasswd",
        "/artifacts/sha256/%2e%2e/%2e%2e/etc/passwd",
        "/artifacts/sha256/" + "A" * 64,
        "/artifacts/sha256/.tmp-0123",
        "/artifacts/sha256/",
        "/artifacts/sha256/" + "0" * 64,
    ],
)
async def test_traversal_and_unknown_names_are_404(served: tuple[store.LocalStore, str], target: str) -> None:
    local, base = served
    secret = local.root / "secret.txt"
    secret.write_text("do not serve")
    status, body = await raw_get(base, target.replace("etc/passwd", "secret.txt"))
    assert status in (400, 404)
    assert b"do not serve" not in body and b"root:" not in body


async def test_health_and_metrics_endpoints(served: tuple[store.LocalStore, str]) -> None:
    _, base = served
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/healthz") as resp:
            assert resp.status == 200
        async with session.get(base + "/metrics") as resp:
            assert resp.status == 200 and "python_info" in await resp.text()


def test_range_parsing_examples_hold() -> None:
    import doctest

    result = doctest.testmod(store)
    assert result.failed == 0 and result.attempted > 0
