"""OCI registries: the distribution API client (auth, manifests, blob push) and the operator's registry-backed store.

:class:`Registry` speaks the OCI distribution spec over aiohttp: ``GET``/``PUT`` manifests, ``HEAD`` blobs, monolithic
blob uploads (``POST`` then ``PUT ?digest=``). Authentication follows the registry's ``WWW-Authenticate`` challenge:
``Basic`` with the configured credentials, or ``Bearer`` (the token flow of the distribution spec: a token for the
repository scope from the challenge's realm, with the credentials when there are any). Credentials come from a
Docker ``config.json``-style document (:func:`credentials_from_docker_config`; a Kubernetes
``kubernetes.io/dockerconfigjson`` or ``kubernetes.io/basic-auth`` Secret, :func:`credentials_from_secret`). TLS
trusts the system roots plus a custom CA file (:func:`ssl_context`). Hosts listed as plain-HTTP are spoken to over
``http://`` (a registry on a trusted network; every bundle is verified by digest and signature anyway).

Credentials never leave this module: no message, log line or exception carries a header, a token or a password
(:class:`Credentials` hides its password from ``repr``), and URLs never carry userinfo (``check_fetchable_uri``).

:class:`OciStore` is the operator's artifact store on a registry: each signed bundle is pushed as an OCI artifact
(:func:`edgefleet.core.oci.bundle_artifact`) to ``<repository prefix>/<model name>``, tagged ``<revision>-<target>``
for people, and referenced by digest, ``oci://host/repo@sha256:<manifest>``, in ``EdgeDevice.spec``.

Errors: network trouble, 5xx and 429 are ``TransientError``; refused credentials are ``TransientError`` too (the fix is
the configuration, not the spec, and the device keeps serving meanwhile) with a message saying so; a missing manifest
is ``InvalidSpecError(DownloadFailed)``; bytes that do not match their digest are ``IntegrityError``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp

from edgefleet.adapters import bundle, store
from edgefleet.api.modeldeployment import check_fetchable_uri
from edgefleet.core import errors, oci

log = logging.getLogger(__name__)
MAX_TOKEN_BYTES = 64 * 1024
MANIFEST_ACCEPT = f"{oci.MANIFEST_MEDIA_TYPE}, {oci.INDEX_MEDIA_TYPE};q=0.5"


Credentials = oci.Credentials
credentials_from_docker_config = oci.credentials_from_docker_config


def credentials_from_secret(data: Mapping[str, str], host: str, where: str) -> dict[str, Credentials]:
    """Credentials from a Secret's decoded ``data``: ``.dockerconfigjson`` (any hosts) or ``username``/``password``
    (basic-auth Secrets; they are for ``host``)."""
    if ".dockerconfigjson" in data:
        try:
            doc = json.loads(data[".dockerconfigjson"])
        except ValueError as exc:
            raise errors.InvalidSpecError(f"{where}: .dockerconfigjson is not JSON", "InvalidConfig") from exc
        return credentials_from_docker_config(doc, where)
    if data.get("username") and "password" in data:
        return {host: Credentials(data["username"], data["password"])}
    raise errors.InvalidSpecError(
        f"{where}: expected .dockerconfigjson or username and password keys (kubernetes.io/basic-auth)", "InvalidConfig"
    )


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system trust roots, plus ``ca_file`` (PEM) when given."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise errors.InvalidSpecError(f"{ca_file}: cannot load the registry CA: {exc}", "InvalidConfig") from exc
    return context


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Registry:
    """A client of one or more OCI registries sharing ``session`` (its connector holds the TLS trust)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        credentials: Mapping[str, Credentials] | None = None,
        plain_http: Sequence[str] = (),
        timeout_seconds: float = 60.0,
    ) -> None:
        self.session = session
        self.credentials = dict(credentials or {})
        self.plain_http = set(plain_http)
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds, sock_connect=min(timeout_seconds, 10.0))
        self._auth: dict[tuple[str, str], str] = {}  # (base URL, scope) -> Authorization value

    def base_url(self, host: str) -> str:
        """``https://host`` (``http://`` for hosts configured as plain HTTP)."""
        return f"{'http' if host in self.plain_http else 'https'}://{host}"

    # -- auth -----------------------------------------------------------------------------------------------------

    def _host_of(self, base: str) -> str:
        return urlsplit(base).netloc

    async def authorization(self, base: str, repository: str, actions: Sequence[str] = ("pull",)) -> str | None:
        """The ``Authorization`` value for ``repository`` at ``base`` (None: the registry wants none)."""
        scope = oci.repository_scope(repository, actions)
        key = (base, scope)
        if key not in self._auth:
            reply = await self._send("GET", f"{base}/v2/", None, b"", {})
            if reply.status == 401:
                self._auth[key] = await self._answer(base, reply.headers.get("WWW-Authenticate", ""), scope)
            elif reply.status == 200:
                self._auth[key] = ""
            else:
                raise self._error(reply, f"{base}/v2/", "checking the registry API")
        return self._auth[key] or None

    def forget(self, base: str, repository: str, actions: Sequence[str] = ("pull",)) -> None:
        """Drop a cached authorization (a token expired)."""
        self._auth.pop((base, oci.repository_scope(repository, actions)), None)

    async def _answer(self, base: str, header: str, scope: str) -> str:
        """The Authorization value answering a registry's challenge."""
        challenge = oci.parse_challenge(header)
        creds = self.credentials.get(self._host_of(base))
        if challenge is None:
            raise errors.TransientError(f"{base} asks for an unsupported authentication scheme", delay=60.0)
        if challenge.scheme == "basic":
            if creds is None:
                raise errors.TransientError(
                    f"{base} requires credentials and none are configured for {self._host_of(base)}; add them to "
                    "the registry credentials",
                    delay=30.0,
                )
            return creds.basic()
        realm = challenge.realm
        if not realm:
            raise errors.TransientError(f"{base}: bearer challenge without a realm", delay=60.0)
        try:
            check_fetchable_uri(realm)
        except ValueError as exc:
            raise errors.TransientError(f"{base}: token realm refused: {exc}", delay=60.0) from exc
        if urlsplit(realm).scheme != "https" and urlsplit(base).scheme == "https":
            raise errors.TransientError(f"{base}: token realm {realm} is not https; refusing to send credentials", 60.0)
        query = {"scope": challenge.params.get("scope", scope)}
        if challenge.params.get("service"):
            query["service"] = challenge.params["service"]
        headers = {"Authorization": creds.basic()} if creds is not None else {}
        reply = await self._send("GET", f"{realm}?{urlencode(query)}", None, b"", headers, limit=MAX_TOKEN_BYTES)
        if reply.status in (401, 403):
            raise errors.TransientError(
                f"the token service of {base} refused the configured credentials ({reply.status}); check them",
                delay=30.0,
            )
        if reply.status != 200:
            raise self._error(reply, realm, "getting a registry token")
        try:
            doc = json.loads(reply.body)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise errors.TransientError(f"the token service of {base} answered without a token", delay=30.0)
        return f"Bearer {token}"

    # -- requests -------------------------------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        url: str,
        authorization: str | None,
        data: bytes,
        headers: Mapping[str, str],
        *,
        limit: int = oci.MAX_MANIFEST_BYTES,
    ) -> Response:
        """One request; the body is read up to ``limit`` bytes (more is an IntegrityError). No redirects."""
        send = dict(headers)
        if authorization:
            send["Authorization"] = authorization
        try:
            async with self.session.request(
                method, url, data=data or None, headers=send, timeout=self.timeout, allow_redirects=False
            ) as resp:
                body = bytearray()
                if method != "HEAD":
                    if resp.content_length is not None and resp.content_length > limit:
                        raise errors.IntegrityError(f"{method} {url} answers {resp.content_length} bytes, over {limit}")
                    async for chunk in resp.content.iter_chunked(64 * 1024):
                        body += chunk
                        if len(body) > limit:
                            raise errors.IntegrityError(f"{method} {url} answered more than {limit} bytes; refused")
                return Response(resp.status, dict(resp.headers), bytes(body))
        except (TimeoutError, aiohttp.ClientError, ConnectionError, ssl.SSLError) as exc:
            raise errors.TransientError(
                f"registry request {method} {url} failed ({type(exc).__name__}: {exc})", 5.0
            ) from exc

    async def request(
        self,
        method: str,
        base: str,
        repository: str,
        path: str,
        *,
        actions: Sequence[str] = ("pull",),
        data: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """A request to ``base + path`` with the repository's authorization; re-authenticates once on a 401."""
        url = path if "://" in path else f"{base}{path}"
        for attempt in (0, 1):
            auth = await self.authorization(base, repository, actions)
            reply = await self._send(method, url, auth, data, headers or {})
            if reply.status != 401 or attempt == 1:
                break
            self.forget(base, repository, actions)
            challenge = reply.headers.get("WWW-Authenticate", "")
            scope = oci.repository_scope(repository, actions)
            self._auth[(base, scope)] = await self._answer(base, challenge, scope)
        if reply.status in (401, 403):
            raise errors.TransientError(
                f"{base} refused access to {repository} ({reply.status}); check the registry credentials configured "
                f"for {self._host_of(base)}",
                delay=30.0,
            )
        return reply

    def _error(self, reply: Response, url: str, what: str) -> errors.EdgefleetError:
        if reply.status == 429 or reply.status >= 500:
            return errors.TransientError(f"{url} answered {reply.status} while {what}; retrying", delay=5.0)
        return errors.InvalidSpecError(f"{url} answered {reply.status} while {what}", errors.Reason.DOWNLOAD_FAILED)

    # -- manifests and blobs ----------------------------------------------------------------------------------------

    async def manifest(self, base: str, ref: oci.Reference) -> oci.Manifest:
        """The manifest ``ref`` names, fetched from ``base`` and checked against its digest (IntegrityError)."""
        reply = await self.request(
            "GET", base, ref.repository, ref.manifest_path(), headers={"Accept": MANIFEST_ACCEPT}
        )
        if reply.status == 404:
            raise errors.InvalidSpecError(
                f"{base}: no manifest {ref.digest} in {ref.repository}", errors.Reason.DOWNLOAD_FAILED
            )
        if reply.status != 200:
            raise self._error(reply, f"{base}{ref.manifest_path()}", "fetching the manifest")
        return oci.parse_manifest(reply.body, ref.digest)

    async def has_blob(self, base: str, ref: oci.Reference, digest: str) -> bool:
        reply = await self.request("HEAD", base, ref.repository, ref.blob_path(digest), actions=("pull", "push"))
        if reply.status in (200, 404):
            return reply.status == 200
        raise self._error(reply, f"{base}{ref.blob_path(digest)}", "checking a blob")

    async def put_blob(self, base: str, ref: oci.Reference, digest: str, data: bytes) -> None:
        """Upload one blob (monolithic: POST then PUT with the digest), unless the registry has it."""
        if await self.has_blob(base, ref, digest):
            return
        actions = ("pull", "push")
        start = await self.request(
            "POST", base, ref.repository, f"/v2/{ref.repository}/blobs/uploads/", actions=actions
        )
        location = start.headers.get("Location")
        if start.status != 202 or not location:
            raise self._error(start, f"{base}/v2/{ref.repository}/blobs/uploads/", "starting a blob upload")
        target = urljoin(base + "/", location)
        if urlsplit(target).netloc != urlsplit(base).netloc:
            raise errors.TransientError(f"{base} sent the upload of {digest} to another host; refusing", delay=60.0)
        target += ("&" if "?" in target else "?") + urlencode({"digest": digest})
        done = await self.request(
            "PUT",
            base,
            ref.repository,
            target,
            actions=actions,
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if done.status != 201:
            raise self._error(done, f"{base}/v2/{ref.repository}/blobs/uploads/", f"uploading blob {digest}")

    async def put_manifest(self, base: str, ref: oci.Reference, manifest: bytes, tag: str | None = None) -> None:
        """Store ``manifest`` under its digest (``ref.digest``) and, when given, under ``tag``."""
        for reference in [ref.digest, *([tag] if tag else [])]:
            reply = await self.request(
                "PUT",
                base,
                ref.repository,
                ref.manifest_path(reference),
                actions=("pull", "push"),
                data=manifest,
                headers={"Content-Type": oci.MANIFEST_MEDIA_TYPE},
            )
            if reply.status != 201:
                raise self._error(reply, f"{base}{ref.manifest_path(reference)}", "storing the manifest")

    async def push(self, base: str, ref: oci.Reference, artifact: oci.Artifact, tag: str | None = None) -> None:
        """Push every blob of ``artifact``, then its manifest (``ref.digest`` must be the artifact's digest)."""
        for digest, data in artifact.blobs.items():
            await self.put_blob(base, ref, digest, data)
        await self.put_manifest(base, ref, artifact.manifest, tag)


class OciStore:
    """The operator's artifact store on an OCI registry (:class:`edgefleet.adapters.store.ArtifactStore`).

    ``repository`` is ``host[:port]/prefix`` (for example ``registry.example.com/edgefleet``); a bundle of model
    ``weld`` goes to ``<prefix>/weld``.
    """

    def __init__(
        self,
        repository: str,
        *,
        credentials: Mapping[str, Credentials] | None = None,
        ca_file: Path | None = None,
        plain_http: bool = False,
    ) -> None:
        host, _, prefix = repository.strip("/").partition("/")
        if not host or "://" in repository:
            raise errors.InvalidSpecError(
                f"{repository!r}: the OCI repository is host[:port]/prefix, without a scheme", "InvalidConfig"
            )
        self.host, self.prefix = host, prefix
        self._ssl = ssl_context(ca_file)
        self._credentials = dict(credentials or {})
        self._plain_http = [host] if plain_http else []
        self._session: aiohttp.ClientSession | None = None
        self._registry: Registry | None = None
        self._digests: dict[str, str] = {}  # bundle digest -> oci:// reference, for uri()

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl, limit=8))
            self._registry = Registry(self._session, credentials=self._credentials, plain_http=self._plain_http)
        return self._registry

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def repository_for(self, model: str) -> str:
        return f"{self.prefix}/{model}" if self.prefix else model

    async def put(self, data: bytes, annotations: Mapping[str, str] | None = None) -> store.Stored:
        """Push ``data`` (a signed bundle) as an OCI artifact, tagged ``annotations["tag"]`` when given."""
        notes = dict(annotations or {})
        digest = bundle.sha256_digest(data)
        members = bundle.members(data)
        manifest = json.loads(members[bundle.MANIFEST])
        model = (manifest.get("model") or {}) if isinstance(manifest, dict) else {}
        name = str(notes.get(oci.ANNOTATION_NAME) or model.get("name") or "model")
        notes.setdefault(oci.ANNOTATION_NAME, name)
        if model.get("version"):
            notes.setdefault(oci.ANNOTATION_VERSION, str(model["version"]))
        tag = notes.pop("tag", None)
        artifact = oci.bundle_artifact(members, digest, notes)
        ref = oci.Reference(self.host, self.repository_for(name), artifact.digest)
        base = self.registry.base_url(self.host)
        await self.registry.push(base, ref, artifact, oci.check_tag(tag) if tag else None)
        self._digests[digest] = str(ref)
        log.info("Pushed bundle to registry reference=%s bundle=%s size=%d", ref, digest, len(data))
        return store.Stored(digest, len(data), str(ref))

    async def has(self, digest: str) -> bool:
        return digest in self._digests

    async def get(self, digest: str) -> bytes:
        raise KeyError(digest)  # devices pull from the registry; the operator never reads bundles back

    def uri(self, digest: str) -> str:
        if digest not in self._digests:
            raise KeyError(digest)
        return self._digests[digest]


__all__ = [
    "Credentials",
    "OciStore",
    "Registry",
    "credentials_from_docker_config",
    "credentials_from_secret",
    "ssl_context",
]
