"""Resumable, bounded artifact downloads over HTTP(S) with aiohttp.

A device fetches bundles over links that drop. :func:`download` appends to ``<digest>.part`` and, when a partial
file exists, asks for the rest with ``Range: bytes=<have>-``; a server that ignores the range (``200``) restarts
the file. The declared ``sizeBytes`` is a hard cap: the body is cut off at one byte over it and rejected as
oversized, so a hostile server cannot fill the disk. Integrity is not judged here (the bundle digest and signature
are checked by the caller); this module only guarantees "exactly ``size`` bytes were written, or an error".

Where a download may connect is :class:`edgefleet.api.addresses.FetchPolicy`'s decision, checked three times: the
URI's host form (:func:`~edgefleet.api.addresses.check_uri`) and an IP literal before anything is sent, every
address a name resolves to (the session's resolver refuses the name if any is forbidden, so a DNS answer cannot
smuggle one in), and the exact address each connection attempt connects to (the connector's socket factory).
Redirects are followed only where the caller allows them (registry blob downloads), each target checked the same
way. A refused address is ``InvalidSpecError`` (``ForbiddenAddress``). Messages never echo what a server sent (no
sizes, no digests): a device must not tell whoever writes its spec what an internal URL serves.

Errors: network trouble, timeouts and 5xx/429 are :class:`~edgefleet.core.errors.TransientError` (retry with
backoff, keeping the partial file); everything else is :class:`~edgefleet.core.errors.InvalidSpecError` with the
reason ``DownloadFailed``, ``Truncated``, ``Oversized`` or ``ForbiddenAddress``: the artifact cannot be used as the
spec names it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import ipaddress
import os
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import yarl

from edgefleet.adapters import bundle
from edgefleet.adapters import oci as oci_client
from edgefleet.api import addresses
from edgefleet.core import oci
from edgefleet.core.errors import IntegrityError, InvalidSpecError, Reason, TransientError

CHUNK = 64 * 1024
_CONTENT_RANGE = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)", re.ASCII)


_REFUSED_MARK = "[refused by the fetch policy] "


class RefusedAddress(OSError):
    """A resolved or connected address the fetch policy refuses (raised inside aiohttp's connector; the mark
    survives when several connection attempts' errors are merged into one)."""

    def __init__(self, why: str) -> None:
        super().__init__(_REFUSED_MARK + why)


class CheckedResolver(aiohttp.abc.AbstractResolver):
    """The default resolver, refusing a name when the policy refuses it or *any* address it resolves to."""

    def __init__(self, policy: addresses.FetchPolicy) -> None:
        self.policy = policy
        self.inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        why = self.policy.check_name(host)
        if why is not None:
            raise RefusedAddress(why)
        results = await self.inner.resolve(host, port, family)
        for result in results:
            why = self.policy.check_address(ipaddress.ip_address(result["host"]))
            if why is not None:
                raise RefusedAddress(f"{host} resolves to a forbidden address: {why}")
        return results

    async def close(self) -> None:
        await self.inner.close()


def _forbidden(uri: str, why: str) -> InvalidSpecError:
    return InvalidSpecError(f"{uri}: {why}; not downloading it", Reason.FORBIDDEN_ADDRESS)


def check_target(uri: str, policy: addresses.FetchPolicy) -> None:
    """Before anything is sent: the URI's host form, and an IP literal's address (pure)."""
    try:
        addresses.check_uri(uri)
    except addresses.AddressError as exc:
        raise _forbidden(uri, str(exc)) from None
    host = yarl.URL(uri).raw_host or ""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return
    why = policy.check_address(literal)
    if why is not None:
        raise _forbidden(uri, why)


def _socket_factory(policy: addresses.FetchPolicy) -> Callable[[Any], socket.socket]:
    """Creates the socket of every connection attempt, after checking the exact address it will connect to."""

    def create(addr_info: Any) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        why = policy.check_address(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
        if why is not None:
            raise RefusedAddress(why)
        return socket.socket(family=family, type=kind, proto=proto)

    return create


class HttpStatusError(InvalidSpecError):
    """The server answered with a status that is neither success nor transient; ``status`` says which."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, Reason.DOWNLOAD_FAILED)
        self.status = status


REDIRECTS = (301, 302, 303, 307, 308)


async def download(
    session: aiohttp.ClientSession,
    uri: str,
    dest: Path,
    size: int,
    *,
    timeout_seconds: float = 300.0,
    on_progress: Callable[[int], None] | None = None,
    headers: Mapping[str, str] | None = None,
    redirects: int = 0,
    max_bytes_per_second: int | None = None,
    policy: addresses.FetchPolicy | None = None,
) -> Path:
    """Download ``uri`` into ``dest`` until it holds exactly ``size`` bytes; resumes a partial ``dest``.

    ``headers`` are sent with the request (a registry's ``Authorization``). Up to ``redirects`` redirects are
    followed (registries send blob downloads to object storage), each target checked like a spec URI, and
    ``Authorization`` is dropped when the target is another host. ``max_bytes_per_second`` paces the body (a
    download ahead of activation must leave the site's link to others). ``policy`` defaults to this process's
    (:meth:`~edgefleet.api.addresses.FetchPolicy.from_env`); it should be the one the session's resolver was built
    with (:func:`new_session`).
    """
    policy = policy or addresses.FetchPolicy.from_env()
    check_target(uri, policy)
    have = dest.stat().st_size if dest.exists() else 0
    if have > size:
        dest.unlink()
        have = 0
    if have == size:
        return dest
    send = {**(headers or {}), **({"Range": f"bytes={have}-"} if have else {})}
    timeout = aiohttp.ClientTimeout(total=timeout_seconds, sock_connect=min(timeout_seconds, 10.0))
    began = time.monotonic()
    fetched = 0
    try:
        async with session.get(uri, headers=send, timeout=timeout, allow_redirects=False) as resp:
            if resp.status in REDIRECTS and redirects > 0 and resp.headers.get("Location"):
                target = _redirect_target(uri, resp.headers["Location"], policy)
                same_host = urlsplit(target).netloc == urlsplit(uri).netloc
                kept = {k: v for k, v in (headers or {}).items() if same_host or k.lower() != "authorization"}
                return await download(
                    session,
                    target,
                    dest,
                    size,
                    timeout_seconds=timeout_seconds,
                    on_progress=on_progress,
                    headers=kept,
                    redirects=redirects - 1,
                    max_bytes_per_second=max_bytes_per_second,
                    policy=policy,
                )
            if resp.status in (429,) or resp.status >= 500:
                raise TransientError(f"artifact server answered {resp.status} for {uri}; retrying", delay=2.0)
            if resp.status == 416 and have:
                # Our partial file is not a prefix the server recognises: start over.
                dest.unlink(missing_ok=True)
                raise TransientError(f"range request for {uri} was refused; restarting the download", delay=0.1)
            if resp.status not in (200, 206):
                raise HttpStatusError(
                    f"artifact server answered {resp.status} for {uri}; check the artifact URI in the spec",
                    resp.status,
                )
            if resp.status == 200:
                have = 0
            elif not _resumes_at(resp.headers.get("Content-Range"), have):
                # A 206 for another range than the one asked for would be appended at the wrong place.
                dest.unlink(missing_ok=True)
                raise TransientError(f"{uri} answered a different range than requested; restarting", delay=0.1)
            declared = resp.content_length
            total = _total_size(resp.headers.get("Content-Range"), have + declared if declared is not None else None)
            if total is not None and total < size:
                raise InvalidSpecError(
                    f"{uri} is shorter than the declared sizeBytes {size} (truncated artifact)", Reason.TRUNCATED
                )
            if total is not None and total > size:
                raise InvalidSpecError(
                    f"{uri} is larger than the declared sizeBytes {size}; not downloading it", Reason.OVERSIZED
                )
            mode = "ab" if have else "wb"
            with open(dest, mode) as fh:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    have += len(chunk)
                    if have > size:
                        fh.close()
                        dest.unlink(missing_ok=True)
                        raise InvalidSpecError(
                            f"{uri} sent more than the declared sizeBytes {size}; download cut off", Reason.OVERSIZED
                        )
                    fh.write(chunk)
                    fetched += len(chunk)
                    if on_progress is not None:
                        fh.flush()
                        on_progress(have)
                    if max_bytes_per_second:
                        ahead = fetched / max_bytes_per_second - (time.monotonic() - began)
                        if ahead > 0:
                            await asyncio.sleep(ahead)
                fh.flush()
                os.fsync(fh.fileno())
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, RefusedAddress) or _REFUSED_MARK in str(exc.os_error):
            raise _forbidden(uri, str(exc.os_error).replace(_REFUSED_MARK, "")) from None
        raise TransientError(
            f"download of {uri} could not connect ({type(exc).__name__}); will retry", delay=1.0
        ) from exc
    except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
        raise TransientError(
            f"download of {uri} interrupted at {have} of {size} bytes ({type(exc).__name__}); will resume",
            delay=1.0,
        ) from exc
    if have < size:
        raise TransientError(f"download of {uri} ended at {have} of {size} bytes; will resume", delay=1.0)
    return dest


def _redirect_target(uri: str, location: str, policy: addresses.FetchPolicy) -> str:
    """Where a redirect from ``uri`` leads, checked like a spec URI (pure); InvalidSpecError when refused.

    >>> _redirect_target("https://r.example/v2/a/b", "https://cdn.example/b?sig=x", addresses.FetchPolicy())
    'https://cdn.example/b?sig=x'
    """
    target = urljoin(uri, location)
    if urlsplit(target).scheme not in ("http", "https") or (
        urlsplit(uri).scheme == "https" and urlsplit(target).scheme != "https"
    ):
        raise InvalidSpecError(f"{uri} redirected to another scheme: only https (or http from http) is followed")
    check_target(target, policy)
    return target


def _total_size(content_range: str | None, fallback: int | None) -> int | None:
    """Complete size from ``Content-Range: bytes a-b/total`` or, without it, the fallback (pure).

    >>> _total_size("bytes 100-199/200", None)
    200
    """
    match = _CONTENT_RANGE.fullmatch((content_range or "").strip())
    if match is not None and match.group(3) != "*":
        return int(match.group(3))
    return fallback


def _resumes_at(content_range: str | None, have: int) -> bool:
    """Whether a 206's ``Content-Range`` starts exactly at ``have`` (pure).

    >>> _resumes_at("bytes 100-199/200", 100), _resumes_at("bytes 0-199/200", 100), _resumes_at(None, 100)
    (True, False, False)
    """
    match = _CONTENT_RANGE.fullmatch((content_range or "").strip())
    return match is not None and int(match.group(1)) == have


def new_session(
    limit: int = 16, policy: addresses.FetchPolicy | None = None, ssl_context: ssl.SSLContext | None = None
) -> aiohttp.ClientSession:
    """A client session for artifact downloads (one per process; connections are pooled), resolving names through
    :class:`CheckedResolver` with ``policy`` (default: this process's). ``ssl_context`` is the TLS trust for
    registries and mirrors (:func:`edgefleet.adapters.oci.ssl_context`: system roots plus a CA)."""
    resolver = CheckedResolver(policy or addresses.FetchPolicy.from_env())
    connector = aiohttp.TCPConnector(
        limit=limit,
        resolver=resolver,
        socket_factory=_socket_factory(resolver.policy),
        ssl=ssl_context if ssl_context is not None else True,
    )
    # trust_env off: a proxy from the environment would make the peer address the proxy's, not the artifact's.
    return aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False)


# -- sources tried in order: mirrors, then the origin -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Mirror:
    """A site-local copy of artifacts: ``url`` (``scheme://host[:port]``) serves the same paths as the origins it
    mirrors (an OCI pull-through cache serves the origin's repositories; an HTTP cache the store's paths).
    ``origins`` are the ``host[:port]`` it mirrors; empty: every origin."""

    url: str
    origins: tuple[str, ...] = ()

    def serves(self, host: str) -> bool:
        return not self.origins or host in self.origins


@dataclasses.dataclass(frozen=True)
class Fetched:
    """A completed download: where it is, which source served it and why the sources before it did not."""

    path: Path
    source: str
    failures: tuple[str, ...] = ()


MAX_FAILURE_TEXT = 300


class Fetcher:
    """:class:`~edgefleet.adapters.protocols.ArtifactFetch` over an ordered list of sources.

    For an artifact URI the sources are every mirror that serves its host, in the configured order, then the URI's own
    origin. A source that is down, answers an error or serves bytes that do not match the digest is skipped for the
    next one; what it did is kept in :attr:`Fetched.failures` (for status). A partial download carries over from one
    source to the next (``Range``: the bytes are content-addressed, so any source's bytes continue any other's);
    bytes that failed a digest check are deleted first. When the origin fails too, its error is raised (with the
    mirrors' failures in the message): transient errors are retried later by the caller, anything else rejects the
    artifact.

    ``oci://host/repository@sha256:<manifest>`` artifacts are pulled as the distribution spec says (manifest by
    digest, then each layer blob by digest from the same source) and re-packed into the canonical bundle tar
    (:func:`edgefleet.adapters.bundle.pack`), whose digest must be the one the spec names.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        mirrors: Sequence[Mirror] = (),
        registry: oci_client.Registry | None = None,
        timeout_seconds: float = 300.0,
        redirects: int = 3,
        policy: addresses.FetchPolicy | None = None,
    ) -> None:
        self.session = session
        self.policy = policy or addresses.FetchPolicy.from_env()
        self.mirrors = tuple(mirrors)
        self.registry = registry or oci_client.Registry(session, timeout_seconds=min(timeout_seconds, 60.0))
        self.timeout_seconds = timeout_seconds
        self.redirects = redirects

    def sources(self, uri: str) -> list[str]:
        """The URLs tried for ``uri``, in order (for ``oci://``: registry base URLs)."""
        if oci.is_reference(uri):
            ref = oci.Reference.parse(uri)
            return [m.url.rstrip("/") for m in self.mirrors if m.serves(ref.host)] + [self.registry.base_url(ref.host)]
        parts = urlsplit(uri)
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        return [m.url.rstrip("/") + tail for m in self.mirrors if m.serves(parts.netloc)] + [uri]

    async def __call__(
        self,
        uri: str,
        dest: Path,
        size: int,
        *,
        digest: str | None = None,
        on_progress: Callable[[int], None] | None = None,
        max_bytes_per_second: int | None = None,
    ) -> Fetched:
        sources = self.sources(uri)
        ref = oci.Reference.parse(uri) if oci.is_reference(uri) else None
        failures: list[str] = []
        for index, source in enumerate(sources):
            try:
                check_target(source, self.policy)
                if ref is not None:
                    try:
                        await self._pull(source, ref, dest, size, digest, on_progress, max_bytes_per_second)
                    except (InvalidSpecError, IntegrityError):
                        _drop_layers(dest)  # kept only for resuming after transient errors
                        raise
                else:
                    await download(
                        self.session,
                        source,
                        dest,
                        size,
                        timeout_seconds=self.timeout_seconds,
                        on_progress=on_progress,
                        redirects=self.redirects,
                        max_bytes_per_second=max_bytes_per_second,
                        policy=self.policy,
                    )
                    if digest is not None:
                        await _check_digest(dest, digest, source)
                return Fetched(dest, source, tuple(failures))
            except (TransientError, InvalidSpecError, IntegrityError) as exc:
                error: Exception = exc
            if index == len(sources) - 1:
                if failures:
                    _add_note(error, "; before it: " + "; ".join(failures))
                raise error
            failures.append(f"{source}: {type(error).__name__}: {str(error)[:MAX_FAILURE_TEXT]}")
        raise AssertionError("unreachable: the origin is always the last source")

    async def _pull(
        self,
        base: str,
        ref: oci.Reference,
        dest: Path,
        size: int,
        digest: str | None,
        on_progress: Callable[[int], None] | None,
        max_bytes_per_second: int | None,
    ) -> None:
        """Pull ``ref`` from the registry at ``base`` into ``dest`` as the canonical bundle tar."""
        if dest.exists() and dest.stat().st_size == size and digest is not None:
            try:
                await _check_digest(dest, digest, base)
                return
            except IntegrityError:
                dest.unlink(missing_ok=True)
        manifest = await self.registry.manifest(base, ref)
        members = manifest.members()
        if manifest.size > size:
            raise IntegrityError(f"{ref}: its layers hold more than the bundle's sizeBytes {size}; refusing it")
        done = 0
        blobs: dict[str, bytes] = {}
        for name, layer in members:
            part = dest.with_name(f"{dest.name}.{layer.digest[7:23]}")

            def progress(have: int, before: int = done) -> None:
                if on_progress is not None:
                    on_progress(before + have)

            await self._blob(base, ref, layer, part, progress, max_bytes_per_second)
            data = await asyncio.to_thread(part.read_bytes)
            actual = "sha256:" + (await asyncio.to_thread(hashlib.sha256, data)).hexdigest()
            if actual != layer.digest:
                part.unlink(missing_ok=True)
                raise IntegrityError(f"layer {name} from {base} does not match the digest its manifest names")
            blobs[name] = data
            done += layer.size
        packed = bundle.pack(blobs)
        if len(packed) != size:
            raise IntegrityError(f"the layers of {ref} do not pack into the bundle's sizeBytes {size}")
        actual = bundle.sha256_digest(packed)
        if digest is not None and actual != digest:
            raise IntegrityError(
                f"digest mismatch: the layers of {ref} from {base} do not re-pack to {digest} (not the signed bundle)"
            )
        await asyncio.to_thread(_write, dest, packed)
        _drop_layers(dest)

    async def _blob(
        self,
        base: str,
        ref: oci.Reference,
        layer: oci.Descriptor,
        part: Path,
        progress: Callable[[int], None],
        max_bytes_per_second: int | None,
    ) -> None:
        url = base + ref.blob_path(layer.digest)
        for attempt in (0, 1):
            authorization = await self.registry.authorization(base, ref.repository)
            try:
                await download(
                    self.session,
                    url,
                    part,
                    layer.size,
                    timeout_seconds=self.timeout_seconds,
                    on_progress=progress,
                    headers={"Authorization": authorization} if authorization else None,
                    redirects=self.redirects,
                    max_bytes_per_second=max_bytes_per_second,
                    policy=self.policy,
                )
                return
            except HttpStatusError as exc:
                if exc.status != 401 or attempt == 1:
                    raise
                self.registry.forget(base, ref.repository)  # the token expired during a long download


async def _check_digest(path: Path, digest: str, source: str) -> None:
    def compute() -> str:
        sha = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(1024 * 1024):
                sha.update(chunk)
        return "sha256:" + sha.hexdigest()

    actual = await asyncio.to_thread(compute)
    if actual != digest:
        path.unlink(missing_ok=True)
        raise IntegrityError(f"digest mismatch: the bytes from {source} are not {digest}")


def _drop_layers(dest: Path) -> None:
    for part in dest.parent.glob(dest.name + ".*"):
        part.unlink(missing_ok=True)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _add_note(error: Exception, note: str) -> None:
    """Append ``note`` to an edgefleet error's message (its type, reason and delay stay)."""
    if error.args:
        error.args = (f"{error.args[0]}{note}", *error.args[1:])


__all__ = [
    "CheckedResolver",
    "Fetched",
    "Fetcher",
    "HttpStatusError",
    "Mirror",
    "RefusedAddress",
    "check_target",
    "download",
    "new_session",
]
