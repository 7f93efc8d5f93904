"""Compile inputs: the source model and its evaluation and calibration sets, fetched or read with limits.

Everything a compile reads is untrusted. :func:`fetch` downloads over http(s) only, with a size limit and the sha256
the spec pins, or pulls an OCI artifact by digest (:func:`fetch_oci`: ``oci://host/repository@sha256:<manifest>``,
ModelPack, KitOps or plain ORAS artifacts); :func:`read` reads a local file (``edgefleet compile``) with the same size
limit; :func:`fetch_inputs` fetches everything one compile target needs. Failures are core errors that say which
check failed: ``InvalidSpecError`` (``SourceScheme``, ``SourceForbidden``, ``SourceMissing``, ``SourceTooLarge``,
``SourceDigestMismatch``) when the spec must change, ``TransientError`` when the server or network may recover,
``NotFoundError`` for a missing local file.

Where a fetch may connect is :class:`edgefleet.api.addresses.FetchPolicy`'s decision: the URI's host form is checked
before the request, and the connection itself resolves the name, refuses it when any address is forbidden and
connects only to the address it checked, for the first request and for every redirect (at most
:data:`MAX_REDIRECTS`, http(s) only, each target's form checked again). Environment proxies are not used: they would
hide the address actually reached. Messages never echo what a server sent (no sizes, no digests). An ``oci://``
registry is reached through the same checked connections.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import ipaddress
import json
import os
import pathlib
import socket
import ssl
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from edgefleet.api import addresses, modeldeployment
from edgefleet.core import errors, oci

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


def _opener(policy: addresses.FetchPolicy, context: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
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
        HTTPS(context=context),
        urllib.request.HTTPDefaultErrorHandler(),
        Redirects(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def fetch(uri: str, sha256: str, limit: int = MAX_SOURCE_BYTES, policy: addresses.FetchPolicy | None = None) -> bytes:
    """Download ``uri`` (http/https, or ``oci://`` by digest) with a size limit and check its sha256; errors say which
    check failed."""
    if oci.is_reference(uri):
        return fetch_oci(uri, sha256, limit, policy)
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


# -- OCI sources ----------------------------------------------------------------------------------------------------

REGISTRY_CONFIG_ENV = "EDGEFLEET_REGISTRY_CONFIG"
"""A Docker ``config.json`` with credentials for source registries (a mounted ``kubernetes.io/dockerconfigjson``)."""
REGISTRY_CA_ENV = "EDGEFLEET_OCI_CA_FILE"
"""A PEM CA trusted for registries besides the system roots (the operator's registry setting)."""
MODEL_MEDIA_TYPES = (
    oci.WEIGHT_MEDIA_TYPE,
    "application/vnd.cncf.model.weight.v1.tar",
    "application/vnd.cncf.model.weight.v1.tar+gzip",
    "application/vnd.kitops.modelkit.model.v1.tar",
    "application/vnd.kitops.modelkit.model.v1.tar+gzip",
)


def fetch_oci(
    uri: str, sha256: str, limit: int = MAX_SOURCE_BYTES, policy: addresses.FetchPolicy | None = None
) -> bytes:
    """The ONNX file of the OCI artifact ``oci://host/repository@sha256:<manifest>``, checked against ``sha256``.

    The manifest is fetched by its digest and checked against it; the model is its one layer titled ``*.onnx`` or
    with a ModelPack/KitOps weight media type (a ``.tar`` or ``.tar+gzip`` layer must hold exactly one ``.onnx``
    file). The blob is checked against its layer digest, then the ONNX bytes against ``spec.model.sha256``. Auth is
    the registry's challenge (Basic, or a Bearer token) with credentials from ``EDGEFLEET_REGISTRY_CONFIG``.
    """
    try:
        ref = oci.Reference.parse(uri)
    except errors.InvalidSpecError as exc:
        raise errors.InvalidSpecError(str(exc), errors.Reason.SOURCE_MISSING) from exc
    try:
        addresses.check_uri(f"https://{ref.host}/")
    except addresses.AddressError as exc:
        raise errors.InvalidSpecError(f"{uri}: {exc}", errors.Reason.SOURCE_FORBIDDEN) from None
    client = _Registry(ref, policy or addresses.FetchPolicy.from_env())
    body = client.get(ref.manifest_path(), oci.MAX_MANIFEST_BYTES, accept=oci.MANIFEST_MEDIA_TYPE)
    try:
        manifest = oci.parse_manifest(body, ref.digest)
    except errors.IntegrityError as exc:
        raise errors.InvalidSpecError(f"{uri}: {exc}", errors.Reason.SOURCE_DIGEST_MISMATCH) from exc
    candidates = [
        layer
        for layer in manifest.layers
        if (layer.title or "").endswith(".onnx") or layer.media_type in MODEL_MEDIA_TYPES
    ]
    if len(candidates) != 1:
        raise errors.InvalidSpecError(
            f"{uri}: expected exactly one model layer (titled *.onnx or a ModelPack/KitOps weight media type), "
            f"found {len(candidates)}",
            errors.Reason.SOURCE_MISSING,
        )
    layer = candidates[0]
    if layer.size > limit:
        raise errors.InvalidSpecError(f"{uri}: the model layer is larger than {limit} bytes", "SourceTooLarge")
    blob = client.get(ref.blob_path(layer.digest), limit)
    if oci.sha256(blob) != layer.digest:
        raise errors.InvalidSpecError(
            f"{uri}: layer {layer.digest} served other bytes", errors.Reason.SOURCE_DIGEST_MISMATCH
        )
    archived = not (layer.title or "").endswith(".onnx") and ".tar" in layer.media_type
    data = _onnx_from_tar(uri, blob, limit) if archived else blob
    if hashlib.sha256(data).hexdigest() != sha256:
        raise errors.InvalidSpecError(
            f"{uri}: the model does not have the sha256 {sha256} that spec.model.sha256 pins; fix it or the artifact",
            reason=errors.Reason.SOURCE_DIGEST_MISMATCH,
        )
    return data


def _onnx_from_tar(uri: str, blob: bytes, limit: int) -> bytes:
    """The one ``.onnx`` regular file of a (gzipped) tar layer, read without extracting anything to disk."""
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
            files = [m for m in tar.getmembers() if m.isreg() and m.name.endswith(".onnx")]
            if len(files) != 1:
                raise errors.InvalidSpecError(
                    f"{uri}: the model layer holds {len(files)} .onnx files, expected one", errors.Reason.SOURCE_MISSING
                )
            if files[0].size > limit:
                raise errors.InvalidSpecError(f"{uri}: the model is over {limit} bytes", "SourceTooLarge")
            extracted = tar.extractfile(files[0])
            assert extracted is not None
            return extracted.read(limit + 1)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise errors.InvalidSpecError(
            f"{uri}: the model layer is not a tar: {exc}", errors.Reason.SOURCE_MISSING
        ) from exc


class _Registry:
    """Just enough of the distribution API for pulls: GET with the registry's auth challenge answered once."""

    def __init__(self, ref: oci.Reference, policy: addresses.FetchPolicy) -> None:
        self.ref = ref
        self.base = f"https://{ref.host}"
        self.authorization: str | None = None
        context = ssl.create_default_context()
        ca = os.environ.get(REGISTRY_CA_ENV)
        if ca:
            context.load_verify_locations(cafile=ca)
        self.opener = _opener(policy, context)
        self.credentials: dict[str, oci.Credentials] = {}
        config = os.environ.get(REGISTRY_CONFIG_ENV)
        if config:
            try:
                doc = json.loads(pathlib.Path(config).read_text())
            except (OSError, ValueError) as exc:
                raise errors.TransientError(f"{config}: cannot read registry credentials: {exc}", 60.0) from exc
            self.credentials = oci.credentials_from_docker_config(doc, config)

    def _open(self, url: str, accept: str | None, authorization: str | None) -> Any:
        request = urllib.request.Request(url)
        if accept:
            request.add_header("Accept", accept)
        if authorization:
            # Unredirected: a registry that sends the blob to object storage must not hand it our credentials.
            request.add_unredirected_header("Authorization", authorization)
        return self.opener.open(request, timeout=FETCH_TIMEOUT)

    def get(self, path: str, limit: int, accept: str | None = None) -> bytes:
        url = self.base + path
        for attempt in (0, 1):
            try:
                with self._open(url, accept, self.authorization) as response:
                    data: bytes = response.read(limit + 1)
                if len(data) > limit:
                    raise errors.InvalidSpecError(f"{url}: larger than {limit} bytes", "SourceTooLarge")
                return data
            except urllib.error.HTTPError as exc:
                exc.close()
                if exc.code == 401 and attempt == 0:
                    self.authorization = self._answer(exc.headers.get("WWW-Authenticate", ""))
                    continue
                if exc.code in (401, 403):
                    raise errors.TransientError(
                        f"{url}: HTTP {exc.code}; check the source registry's credentials", 60.0
                    ) from exc
                if 400 <= exc.code < 500:
                    raise errors.InvalidSpecError(
                        f"{url}: HTTP {exc.code}; check spec.model.uri", errors.Reason.SOURCE_MISSING
                    ) from exc
                raise errors.TransientError(f"{url}: HTTP {exc.code}", delay=30.0) from exc
            except _Forbidden as exc:
                raise errors.InvalidSpecError(
                    f"{url}: {exc}; not fetching it", errors.Reason.SOURCE_FORBIDDEN
                ) from None
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, _Forbidden):
                    message = f"{url}: {exc.reason}; not fetching it"
                    raise errors.InvalidSpecError(message, errors.Reason.SOURCE_FORBIDDEN) from None
                raise errors.TransientError(f"{url}: {exc.reason}", delay=30.0) from exc
            except OSError as exc:
                raise errors.TransientError(f"{url}: {exc}", delay=30.0) from exc
        raise AssertionError("unreachable")

    def _answer(self, header: str) -> str:
        challenge = oci.parse_challenge(header)
        creds = self.credentials.get(self.ref.host)
        if challenge is None:
            raise errors.TransientError(f"{self.base}: unsupported authentication challenge", 60.0)
        if challenge.scheme == "basic":
            if creds is None:
                raise errors.TransientError(f"{self.base} needs credentials; set {REGISTRY_CONFIG_ENV}", 60.0)
            return creds.basic()
        realm = challenge.realm or ""
        try:
            modeldeployment.check_fetchable_uri(realm)
        except ValueError as exc:
            raise errors.TransientError(f"{self.base}: token realm refused: {exc}", 60.0) from exc
        if not realm.startswith("https://"):
            raise errors.TransientError(f"{self.base}: token realm {realm!r} is not https", 60.0)
        query = {"scope": challenge.params.get("scope", oci.repository_scope(self.ref.repository, ["pull"]))}
        if challenge.params.get("service"):
            query["service"] = challenge.params["service"]
        try:
            with self._open(f"{realm}?{urllib.parse.urlencode(query)}", None, creds.basic() if creds else None) as r:
                doc = json.loads(r.read(64 * 1024))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise errors.TransientError(f"{self.base}: token request failed: {exc}", 60.0) from exc
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str):
            raise errors.TransientError(f"{self.base}: the token service answered without a token", 60.0)
        return f"Bearer {token}"


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


__all__ = ["FETCH_TIMEOUT", "MAX_SOURCE_BYTES", "REGISTRY_CONFIG_ENV", "fetch", "fetch_inputs", "fetch_oci", "read"]
