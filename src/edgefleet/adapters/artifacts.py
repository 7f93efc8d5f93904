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
Redirects are not followed. A refused address is ``InvalidSpecError`` (``ForbiddenAddress``). Messages never echo
what a server sent (no sizes, no digests): a device must not tell whoever writes its spec what an internal URL serves.

Errors: network trouble, timeouts and 5xx/429 are :class:`~edgefleet.core.errors.TransientError` (retry with
backoff, keeping the partial file); everything else is :class:`~edgefleet.core.errors.InvalidSpecError` with the
reason ``DownloadFailed``, ``Truncated``, ``Oversized`` or ``ForbiddenAddress``: the artifact cannot be used as the
spec names it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yarl

from edgefleet.api import addresses
from edgefleet.core.errors import InvalidSpecError, Reason, TransientError

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


async def download(
    session: aiohttp.ClientSession,
    uri: str,
    dest: Path,
    size: int,
    *,
    timeout_seconds: float = 300.0,
    on_progress: Callable[[int], None] | None = None,
    policy: addresses.FetchPolicy | None = None,
) -> Path:
    """Download ``uri`` into ``dest`` until it holds exactly ``size`` bytes; resumes a partial ``dest``.

    ``policy`` defaults to this process's (:meth:`~edgefleet.api.addresses.FetchPolicy.from_env`); it should be the
    one the session's resolver was built with (:func:`new_session`)."""
    policy = policy or addresses.FetchPolicy.from_env()
    check_target(uri, policy)
    have = dest.stat().st_size if dest.exists() else 0
    if have > size:
        dest.unlink()
        have = 0
    if have == size:
        return dest
    headers = {"Range": f"bytes={have}-"} if have else {}
    timeout = aiohttp.ClientTimeout(total=timeout_seconds, sock_connect=min(timeout_seconds, 10.0))
    try:
        async with session.get(uri, headers=headers, timeout=timeout, allow_redirects=False) as resp:
            if resp.status in (429,) or resp.status >= 500:
                raise TransientError(f"artifact server answered {resp.status} for {uri}; retrying", delay=2.0)
            if resp.status == 416 and have:
                # Our partial file is not a prefix the server recognises: start over.
                dest.unlink(missing_ok=True)
                raise TransientError(f"range request for {uri} was refused; restarting the download", delay=0.1)
            if resp.status not in (200, 206):
                raise InvalidSpecError(
                    f"artifact server answered {resp.status} for {uri}; check the artifact URI in the spec",
                    Reason.DOWNLOAD_FAILED,
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
                    if on_progress is not None:
                        fh.flush()
                        on_progress(have)
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


def new_session(limit: int = 16, policy: addresses.FetchPolicy | None = None) -> aiohttp.ClientSession:
    """A client session for artifact downloads (one per process; connections are pooled), resolving names through
    :class:`CheckedResolver` with ``policy`` (default: this process's)."""
    resolver = CheckedResolver(policy or addresses.FetchPolicy.from_env())
    connector = aiohttp.TCPConnector(limit=limit, resolver=resolver, socket_factory=_socket_factory(resolver.policy))
    # trust_env off: a proxy from the environment would make the peer address the proxy's, not the artifact's.
    return aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False)


__all__ = ["CheckedResolver", "RefusedAddress", "check_target", "download", "new_session"]
