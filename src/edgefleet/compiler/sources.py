"""Compile inputs: the source model and its evaluation and calibration sets, fetched or read with limits.

Everything a compile reads is untrusted. :func:`fetch` downloads over http(s) only, with a size limit and the sha256
the spec pins; :func:`read` reads a local file (``edgefleet compile``) with the same size limit; :func:`fetch_inputs`
fetches everything one compile target needs. Failures are core errors that say which check failed:
``InvalidSpecError`` (``SourceScheme``, ``SourceMissing``, ``SourceTooLarge``, ``SourceDigestMismatch``) when the spec
must change, ``TransientError`` when the server or network may recover, ``NotFoundError`` for a missing local file.
"""

from __future__ import annotations

import hashlib
import pathlib
import urllib.error
import urllib.request

from edgefleet.api import modeldeployment
from edgefleet.core import errors

MAX_SOURCE_BYTES = 1024**3
FETCH_TIMEOUT = 60.0


def fetch(uri: str, sha256: str, limit: int = MAX_SOURCE_BYTES) -> bytes:
    """Download ``uri`` (http/https) with a size limit and check its sha256; errors say which check failed."""
    if not uri.startswith(("http://", "https://")):
        raise errors.InvalidSpecError(f"{uri}: only http and https sources can be fetched", errors.Reason.SOURCE_SCHEME)
    try:
        # The scheme was checked above, so urlopen cannot be pointed at file:// or other handlers.
        with urllib.request.urlopen(uri, timeout=FETCH_TIMEOUT) as response:
            data: bytes = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the error response open
        if 400 <= exc.code < 500:
            message = f"{uri}: HTTP {exc.code}; check spec.model.uri"
            raise errors.InvalidSpecError(message, errors.Reason.SOURCE_MISSING) from exc
        raise errors.TransientError(f"{uri}: HTTP {exc.code}", delay=30.0) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise errors.TransientError(f"{uri}: {exc}", delay=30.0) from exc
    if len(data) > limit:
        raise errors.InvalidSpecError(f"{uri}: larger than {limit} bytes", reason=errors.Reason.SOURCE_TOO_LARGE)
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise errors.InvalidSpecError(
            f"{uri}: sha256 is {actual}, spec.model.sha256 says {sha256}; fix the digest or the file",
            reason=errors.Reason.SOURCE_DIGEST_MISMATCH,
        )
    return data


def read(path: pathlib.Path, what: str, limit: int = MAX_SOURCE_BYTES) -> bytes:
    """The bytes of the local file ``path`` (``what`` names it in errors), at most ``limit`` of them."""
    if not path.is_file():
        raise errors.NotFoundError(f"{path}: {what} not found")
    if path.stat().st_size > limit:
        raise errors.InvalidSpecError(
            f"{path}: {what} is larger than {limit} bytes", reason=errors.Reason.SOURCE_TOO_LARGE
        )
    return path.read_bytes()


def fetch_inputs(
    spec: modeldeployment.ModelDeploymentSpec, target: modeldeployment.CompileTarget
) -> tuple[bytes, bytes, bytes | None]:
    """The source model, the target's evaluation set and its calibration set (if any), digests checked."""
    source = fetch(spec.model.uri, spec.model.sha256)
    evaluation = fetch(target.evaluation.uri, target.evaluation.sha256)
    calibration = fetch(target.calibration.uri, target.calibration.sha256) if target.calibration is not None else None
    return source, evaluation, calibration


__all__ = ["FETCH_TIMEOUT", "MAX_SOURCE_BYTES", "fetch", "fetch_inputs", "read"]
