"""The artifact store: signed bundles kept by digest, and the HTTP endpoint devices download them from.

Artifacts are content-addressed: a bundle's name is ``sha256:<hex>`` of its bytes, so publishing is idempotent, two
operator replicas cannot disagree about a name, and a device verifies what it downloaded against the digest written in
its ``spec.models`` entry (then checks the ed25519 signature inside). :class:`ArtifactStore` is the small interface the
operator needs; :class:`LocalStore` keeps files in a directory, ``<root>/sha256/<hex>``:

* writes are atomic (temporary file, fsync, hard link to the final name, fsync of the directory), so a reader never sees
  a partial bundle and a crash leaves at most a stray temporary file;
* an existing name is never overwritten; when its bytes differ from their name the store is corrupt and
  :class:`StoreError` says so instead of papering over it.

:func:`make_app` serves ``GET``/``HEAD /artifacts/sha256/<hex>`` with single-range ``Range`` requests (206, 416),
``If-Range``, ``If-None-Match`` and ``ETag`` = the digest, so interrupted device downloads resume. The path is matched
against ``[a-f0-9]{64}`` and never joined from request text, which rules out traversal. The same app serves ``/healthz``
and, when asked, Prometheus ``/metrics`` (with ``edgefleet_artifact_store_sent_bytes_total``, the bundle bytes sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from edgefleet.adapters import bundle
from edgefleet.core import errors

HEX = re.compile(r"^[a-f0-9]{64}$")
DIGEST = re.compile(r"^sha256:([a-f0-9]{64})$")
PREFIX = "/artifacts/sha256/"
CONTENT_TYPE = "application/vnd.edgefleet.bundle.v1+tar"
CHUNK = 256 * 1024
MAX_ARTIFACT_BYTES = bundle.MAX_BUNDLE_BYTES


class StoreError(errors.EdgefleetError):
    """The store is unusable or corrupt; the message names the file and what to do."""


@dataclasses.dataclass(frozen=True)
class Stored:
    """Where a published artifact lives."""

    digest: str
    size_bytes: int
    uri: str


class ArtifactStore(Protocol):
    """What the operator needs from an artifact backend."""

    async def put(self, data: bytes, annotations: Mapping[str, str] | None = None) -> Stored:
        """Publish ``data`` under its digest (idempotent) and return where devices fetch it. ``annotations``
        (model name, version, revision, ``tag``) label it where the backend keeps labels (an OCI registry)."""
        ...

    async def get(self, digest: str) -> bytes:
        """The bytes of ``digest``; raises KeyError when absent."""
        ...

    async def has(self, digest: str) -> bool:
        """Whether ``digest`` is stored."""
        ...

    def uri(self, digest: str) -> str:
        """The download URL of ``digest``."""
        ...


def hex_of(digest: str) -> str:
    """The hex part of ``sha256:<hex>``; ValueError for anything else (pure)."""
    match = DIGEST.match(digest)
    if match is None:
        raise ValueError(f"not a sha256 digest: {digest!r} (expected sha256:<64 lower-case hex>)")
    return match.group(1)


class LocalStore:
    """Artifacts in a local directory, served over HTTP by :func:`make_app` at ``base_url``."""

    def __init__(self, root: Path, base_url: str) -> None:
        self.root = Path(root)
        self.base_url = base_url.rstrip("/")
        self.blobs = self.root / "sha256"
        try:
            self.blobs.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create artifact directory {self.blobs}: {exc}; check the volume") from exc

    def path(self, digest: str) -> Path:
        """The file of ``digest`` (it may not exist)."""
        return self.blobs / hex_of(digest)

    def uri(self, digest: str) -> str:
        return f"{self.base_url}{PREFIX}{hex_of(digest)}"

    async def put(self, data: bytes, annotations: Mapping[str, str] | None = None) -> Stored:
        return await asyncio.to_thread(self.put_sync, data)

    async def get(self, digest: str) -> bytes:
        return await asyncio.to_thread(self.get_sync, digest)

    async def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put_sync(self, data: bytes) -> Stored:
        """Blocking form of :meth:`put`."""
        if len(data) > MAX_ARTIFACT_BYTES:
            raise StoreError(f"artifact is {len(data)} bytes, over the {MAX_ARTIFACT_BYTES}-byte limit")
        digest = bundle.sha256_digest(data)
        final = self.path(digest)
        if final.exists():
            self._verify(final, digest)
            return Stored(digest, len(data), self.uri(digest))
        tmp = self.blobs / f".tmp-{secrets.token_hex(8)}"
        try:
            with tmp.open("xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.chmod(0o444)
            try:
                os.link(tmp, final)  # fails instead of replacing: a name is never overwritten
            except FileExistsError:
                self._verify(final, digest)
            self._fsync_dir()
        except OSError as exc:
            raise StoreError(f"cannot write {final}: {exc}; check free space and permissions") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return Stored(digest, len(data), self.uri(digest))

    def get_sync(self, digest: str) -> bytes:
        """Blocking form of :meth:`get`; the bytes are checked against the digest."""
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyError(digest) from None
        if bundle.sha256_digest(data) != digest:
            raise StoreError(f"{path} does not match its digest (corrupt store); delete it and republish")
        return data

    def _verify(self, path: Path, digest: str) -> None:
        sha = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                sha.update(chunk)
        if "sha256:" + sha.hexdigest() != digest:
            raise StoreError(f"{path} holds bytes that do not match its name (corrupt store); delete and republish")

    def _fsync_dir(self) -> None:
        fd = os.open(self.blobs, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- HTTP ---------------------------------------------------------------------------------------------------


def parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """Parse a ``Range`` header for a resource of ``size`` bytes (pure).

    Returns ``(first, last)`` inclusive for one satisfiable range, None when the header should be ignored (malformed,
    several ranges, or another unit: RFC 9110 lets a server answer 200 with the whole body), or ``"unsatisfiable"`` for
    a syntactically valid range outside the resource (416).

    >>> parse_range("bytes=0-99", 1000), parse_range("bytes=900-", 1000), parse_range("bytes=-100", 1000)
    ((0, 99), (900, 999), (900, 999))
    >>> parse_range("bytes=1000-", 1000), parse_range("bytes=0-1,5-9", 1000), parse_range("items=1-2", 10)
    ('unsatisfiable', None, None)

    Only ASCII digits count (``\\d`` would also take Arabic-Indic and other Unicode digits), and a number is never
    converted from more than :data:`_MAX_DIGITS` digits: a longer one is larger than any file anyway.

    >>> parse_range("bytes=" + "9" * 5000 + "-", 1000), parse_range("bytes=\u0661\u0660-\u0669\u0669", 1000)
    ('unsatisfiable', None)
    """
    match = re.fullmatch(r"bytes=([0-9]*)-([0-9]*)", header.strip(" \t"), flags=re.ASCII)
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:
        length = _bounded(last_text)
        if length == 0:
            return "unsatisfiable"
        return (max(0, size - length), size - 1) if size else "unsatisfiable"
    first = _bounded(first_text)
    last = _bounded(last_text) if last_text else size - 1
    if last_text and last < first:
        return None
    if first >= size:
        return "unsatisfiable"
    return first, min(last, size - 1)


_MAX_DIGITS = 19  # 2**63 has 19 digits


def _bounded(digits: str) -> int:
    """``int(digits)`` for ASCII digits, capped at 10**19 (pure)."""
    return int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS


def _etag(hex_digest: str) -> str:
    return f'"sha256:{hex_digest}"'


async def _artifact(request: web.Request) -> web.StreamResponse:
    store: LocalStore = request.app[STORE_KEY]
    name = request.match_info["name"]
    if not HEX.match(name):
        raise web.HTTPNotFound(text="artifacts are addressed as /artifacts/sha256/<64 lower-case hex>\n")
    path = store.blobs / name
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise web.HTTPNotFound(text=f"no artifact sha256:{name}\n") from None
    etag = _etag(name)
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "public, max-age=31536000, immutable",
        "Content-Type": CONTENT_TYPE,
    }
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and (if_none_match.strip() == "*" or etag in if_none_match):
        return web.Response(status=304, headers=headers)
    span: tuple[int, int] | str | None = None
    range_header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if range_header is not None and (if_range is None or if_range.strip() == etag):
        span = parse_range(range_header, size)
    if span == "unsatisfiable":
        return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    first, last = span if isinstance(span, tuple) else (0, size - 1)
    length = last - first + 1 if size else 0
    response = web.StreamResponse(status=206 if isinstance(span, tuple) else 200, headers=headers)
    if isinstance(span, tuple):
        response.headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    response.content_length = length
    await response.prepare(request)
    if request.method == "HEAD" or length == 0:
        await response.write_eof()
        return response
    sent = request.app.get(SENT_KEY)
    with path.open("rb") as handle:
        handle.seek(first)
        remaining = length
        while remaining > 0:
            chunk = await asyncio.to_thread(handle.read, min(CHUNK, remaining))
            if not chunk:
                break  # the file cannot shrink (names are never rewritten); stop rather than spin
            await response.write(chunk)
            remaining -= len(chunk)
            if sent is not None:
                sent.inc(len(chunk))
    await response.write_eof()
    return response


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


STORE_KEY: web.AppKey[LocalStore] = web.AppKey("store", LocalStore)
SENT_KEY: web.AppKey[Any] = web.AppKey("sent", object)
_SENT: Any = None


def _sent_counter() -> Any:
    """``edgefleet_artifact_store_sent_bytes_total``: bundle bytes the store sent (one counter per process)."""
    global _SENT
    if _SENT is None:
        import prometheus_client

        _SENT = prometheus_client.Counter(
            "edgefleet_artifact_store_sent_bytes", "Bundle bytes the embedded artifact store sent to devices"
        )
    return _SENT


def make_app(store: LocalStore, metrics: bool = False) -> web.Application:
    """The aiohttp application serving ``store`` (and ``/metrics`` when ``metrics``)."""
    app = web.Application()
    app[STORE_KEY] = store
    app.router.add_get(PREFIX + "{name}", _artifact)  # add_get also answers HEAD
    app.router.add_get("/healthz", _healthz)
    if metrics:
        import prometheus_client

        app[SENT_KEY] = _sent_counter()

        async def _metrics(_request: web.Request) -> web.Response:
            body = prometheus_client.generate_latest()
            return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})

        app.router.add_get("/metrics", _metrics)
    return app


async def serve(store: LocalStore, host: str, port: int, metrics: bool = False) -> web.AppRunner:
    """Start serving ``store`` on ``host:port`` (port 0 picks a free one); returns the runner to clean up."""
    runner = web.AppRunner(make_app(store, metrics), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StoreError(f"cannot listen on {host}:{port}: {exc}; pick another --store-port") from exc
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port a runner from :func:`serve` listens on."""
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise StoreError("the artifact server is not listening on a TCP port")


__all__ = [
    "CONTENT_TYPE",
    "ArtifactStore",
    "LocalStore",
    "StoreError",
    "Stored",
    "bound_port",
    "hex_of",
    "make_app",
    "parse_range",
    "serve",
]
