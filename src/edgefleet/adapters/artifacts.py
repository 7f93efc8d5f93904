"""Resumable, bounded artifact downloads over HTTP(S) with aiohttp.

A device fetches bundles over links that drop. :func:`download` appends to ``<digest>.part`` and, when a partial
file exists, asks for the rest with ``Range: bytes=<have>-``; a server that ignores the range (``200``) restarts
the file. The declared ``sizeBytes`` is a hard cap: the body is cut off at one byte over it and rejected as
oversized, so a hostile server cannot fill the disk. Integrity is not judged here (the bundle digest and signature
are checked by the caller); this module only guarantees "exactly ``size`` bytes were written, or an error".

Errors: network trouble, timeouts and 5xx/429 are :class:`~edgefleet.core.errors.TransientError` (retry with
backoff, keeping the partial file); everything else is :class:`~edgefleet.core.errors.InvalidSpecError` with the
reason ``DownloadFailed``, ``Truncated`` or ``Oversized``: the artifact cannot be used as the spec names it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import aiohttp

from edgefleet.core.errors import InvalidSpecError, Reason, TransientError

CHUNK = 64 * 1024


async def download(
    session: aiohttp.ClientSession,
    uri: str,
    dest: Path,
    size: int,
    *,
    timeout_seconds: float = 300.0,
    on_progress: Callable[[int], None] | None = None,
) -> Path:
    """Download ``uri`` into ``dest`` until it holds exactly ``size`` bytes; resumes a partial ``dest``."""
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
            declared = resp.content_length
            total = _total_size(resp.headers.get("Content-Range"), have + declared if declared is not None else None)
            if total is not None and total < size:
                raise InvalidSpecError(
                    f"{uri} is {total} bytes, shorter than the declared sizeBytes {size} (truncated artifact)",
                    Reason.TRUNCATED,
                )
            if total is not None and total > size:
                raise InvalidSpecError(
                    f"{uri} is {total} bytes, over the declared sizeBytes {size}; not downloading it",
                    Reason.OVERSIZED,
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
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        if total.isdigit():
            return int(total)
    return fallback


def new_session(limit: int = 16) -> aiohttp.ClientSession:
    """A client session for artifact downloads (one per process; connections are pooled)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit), auto_decompress=False)


__all__ = ["download", "new_session"]
