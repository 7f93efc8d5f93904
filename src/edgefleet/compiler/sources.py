"""Compile inputs: the source model and its evaluation and calibration sets, fetched or read with limits.

Everything a compile reads is untrusted. :func:`fetch` downloads over http(s) only, with a size limit and the sha256
the spec pins; :func:`read` reads a local file (``edgefleet compile``) with the same size limit; :func:`fetch_inputs`
fetches everything one compile target needs. Failures are core errors that say which check failed:
``InvalidSpecError`` (``SourceScheme``, ``SourceForbidden``, ``SourceMissing``, ``SourceTooLarge``,
``SourceDigestMismatch``) when the spec must change, ``TransientError`` when the server or network may recover,
``NotFoundError`` for a missing local file.

Where a fetch may connect is :class:`edgefleet.api.addresses.FetchPolicy`'s decision: the URI's host form is checked
before the request, and the connection itself resolves the name, refuses it when any address is forbidden and
connects only to the address it checked, for the first request and for every redirect (at most
:data:`MAX_REDIRECTS`, http(s) only, each target's form checked again). Environment proxies are not used: they would
hide the address actually reached. Messages never echo what a server sent (no sizes, no digests).
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import pathlib
import socket
import urllib.error
import urllib.request
from typing import Any

from edgefleet.api import addresses, modeldeployment
from edgefleet.core import errors

MAX_SOURCE_BYTES = 1024**3
FETCH_TIMEOUT = 60.0
MAX_REDIRECTS = 5


class _Forbidden(OSError):
    """Raised inside a connection when the policy refuses the target (urllib wraps it in URLError)."""


def _connect(policy: addresses.FetchPolicy, address: tuple[str, int], timeout: Any, source: Any) -> socket.socket:
    """Resolve, check every address, then connect to a checked one (never resolve twice: no DNS rebinding)."""
    host, port = address
    why = policy.check_name(host)
    if why is not None:
        raise _Forbidden(why)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from exc
    for info in infos:
        why = policy.check_address(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
        if why is not None:
            raise _Forbidden(f"{host} resolves to a forbidden address: {why}")
    last: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
                sock.settimeout(timeout)
            if source:
                sock.bind(source)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"cannot connect to {host}")


def _opener(policy: addresses.FetchPolicy) -> urllib.request.OpenerDirector:
    """An opener whose every connection goes through :func:`_connect`, with checked redirects and no proxies."""

    class Checked(http.client.HTTPConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = lambda addr, timeout, source=None: _connect(policy, addr, timeout, source)

    class CheckedTLS(http.client.HTTPSConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = lambda addr, timeout, source=None: _connect(policy, addr, timeout, source)

    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Checked, req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(CheckedTLS, req, context=self._context)  # type: ignore[attr-defined]

    class Redirects(urllib.request.HTTPRedirectHandler):
        max_redirections = MAX_REDIRECTS

        def redirect_request(
            self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
        ) -> urllib.request.Request | None:
            try:
                addresses.check_uri(newurl)
            except addresses.AddressError as exc:
                fp.close()  # the redirect response holds its connection open
                raise _Forbidden(f"redirected to {newurl}: {exc}") from None
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.UnknownHandler(),
        HTTP(),
        HTTPS(),
        urllib.request.HTTPDefaultErrorHandler(),
        Redirects(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def fetch(uri: str, sha256: str, limit: int = MAX_SOURCE_BYTES, policy: addresses.FetchPolicy | None = None) -> bytes:
    """Download ``uri`` (http/https) with a size limit and check its sha256; errors say which check failed."""
    if not uri.startswith(("http://", "https://")):
        raise errors.InvalidSpecError(f"{uri}: only http and https sources can be fetched", errors.Reason.SOURCE_SCHEME)
    try:
        addresses.check_uri(uri)
    except addresses.AddressError as exc:
        raise errors.InvalidSpecError(f"{uri}: {exc}", errors.Reason.SOURCE_FORBIDDEN) from None
    opener = _opener(policy or addresses.FetchPolicy.from_env())
    try:
        # Only the http and https handlers are installed, so nothing can point the opener at file:// or others.
        with opener.open(uri, timeout=FETCH_TIMEOUT) as response:
            data: bytes = response.read(limit + 1)
    except _Forbidden as exc:
        raise errors.InvalidSpecError(f"{uri}: {exc}; not fetching it", errors.Reason.SOURCE_FORBIDDEN) from None
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the error response open
        if 300 <= exc.code < 400:  # a redirect urllib refused to follow: another scheme, or a loop
            message = f"{uri}: HTTP {exc.code}, redirect not followed ({exc.msg.split(' - ', 1)[-1]})"
            raise errors.InvalidSpecError(message, errors.Reason.SOURCE_FORBIDDEN) from None
        if 400 <= exc.code < 500:
            message = f"{uri}: HTTP {exc.code}; check spec.model.uri"
            raise errors.InvalidSpecError(message, errors.Reason.SOURCE_MISSING) from exc
        raise errors.TransientError(f"{uri}: HTTP {exc.code}", delay=30.0) from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, _Forbidden):
            message = f"{uri}: {exc.reason}; not fetching it"
            raise errors.InvalidSpecError(message, errors.Reason.SOURCE_FORBIDDEN) from None
        raise errors.TransientError(f"{uri}: {exc.reason}", delay=30.0) from exc
    except OSError as exc:
        raise errors.TransientError(f"{uri}: {exc}", delay=30.0) from exc
    if len(data) > limit:
        raise errors.InvalidSpecError(f"{uri}: larger than {limit} bytes", reason=errors.Reason.SOURCE_TOO_LARGE)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise errors.InvalidSpecError(
            f"{uri}: the fetched bytes do not have the sha256 {sha256} the spec pins; fix the digest or the file",
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
