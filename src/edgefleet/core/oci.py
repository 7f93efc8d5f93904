"""OCI artifacts, the pure part: references, the image manifest of a bundle, and registry auth challenges.

A signed bundle (:mod:`edgefleet.adapters.bundle`: a canonical tar of named members) is stored in an OCI registry as
one *image manifest* (OCI image spec 1.1) with ``artifactType`` set, so registries, ``oras`` and ModelPack tools see
a model artifact rather than a container image:

* ``artifactType``: ``application/vnd.cncf.model.manifest.v1+json`` (CNCF ModelPack);
* ``config``: a ModelPack model config (``application/vnd.cncf.model.config.v1+json``): name, version and revision in
  ``descriptor``, ``format: onnx`` and the precision in ``config``, the layer digests in ``modelfs.diffIds``;
* one layer per bundle member, in member-name order, each titled with its member name
  (``org.opencontainers.image.title``, what ``oras pull`` writes it as, and ModelPack's ``org.cnai.model.filepath``):
  ``model.onnx`` as ModelPack weights (``application/vnd.cncf.model.weight.v1.raw``), ``manifest.json`` and
  ``signature.json`` with edgefleet media types, any other member as ``application/vnd.edgefleet.bundle.member.v1``;
* annotations: the model name, version, revision and the digest of the canonical tar the layers re-pack into.

A device pulls the manifest by its digest, each layer by its digest, packs the members into the canonical tar and
then verifies exactly as for a bundle downloaded over HTTP: the tar's sha256 against ``spec.models[].artifact.digest``
and the ed25519 signature over the bundle manifest. Layers carry no trust of their own: a manifest pushed by anyone
(``oras push``) installs only when the re-packed bytes are the signed bundle the spec names.

References are ``oci://<registry host[:port]>/<repository>@sha256:<hex>``: always by digest, never by tag, so what a
device installs cannot change under the same name. Everything here is pure.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from edgefleet.core import errors

SCHEME = "oci://"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.cncf.model.config.v1+json"
EMPTY_CONFIG_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
WEIGHT_MEDIA_TYPE = "application/vnd.cncf.model.weight.v1.raw"
MEDIA_TYPES = {
    "model.onnx": WEIGHT_MEDIA_TYPE,
    "manifest.json": "application/vnd.edgefleet.bundle.manifest.v1+json",
    "signature.json": "application/vnd.edgefleet.bundle.signature.v1+json",
}
MEMBER_MEDIA_TYPE = "application/vnd.edgefleet.bundle.member.v1"
TITLE = "org.opencontainers.image.title"
FILEPATH = "org.cnai.model.filepath"
ANNOTATION_NAME = "io.edgefleet.model.name"
ANNOTATION_VERSION = "io.edgefleet.model.version"
ANNOTATION_REVISION = "io.edgefleet.model.revision"
ANNOTATION_BUNDLE = "io.edgefleet.bundle.digest"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""What registries accept for a manifest (distribution's default limit); a bigger answer is refused unread."""
MAX_LAYERS = 64

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
# distribution's reference grammar, simplified: host[:port] then lower-case path components.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"(?P<host>{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{{1,5}})?)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = rf"(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)"
_REFERENCE = re.compile(rf"^oci://{_HOST}/{_REPOSITORY}@(?P<digest>sha256:[a-f0-9]{{64}})$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_MEMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclasses.dataclass(frozen=True)
class Reference:
    """``oci://host/repository@digest``: one manifest in one repository of one registry.

    >>> ref = Reference.parse("oci://registry.plant-a:5000/edgefleet/weld@sha256:" + "a" * 64)
    >>> ref.host, ref.repository, ref.manifest_path()[:40]
    ('registry.plant-a:5000', 'edgefleet/weld', '/v2/edgefleet/weld/manifests/sha256:aaaa')
    """

    host: str
    repository: str
    digest: str

    @classmethod
    def parse(cls, uri: str) -> Reference:
        """Parse an ``oci://`` URI; InvalidSpecError naming what is wrong (tags are refused: digests only)."""
        match = _REFERENCE.match(uri)
        if match is None:
            if uri.startswith(SCHEME) and "@" not in uri:
                raise errors.InvalidSpecError(
                    f"{uri}: OCI references must pin a digest (oci://host/repository@sha256:<hex>), not a tag",
                    errors.Reason.INVALID_SPEC,
                )
            raise errors.InvalidSpecError(
                f"{uri}: not an OCI reference of the form oci://host[:port]/repository@sha256:<64 hex>",
                errors.Reason.INVALID_SPEC,
            )
        return cls(match.group("host"), match.group("repository"), match.group("digest"))

    def __str__(self) -> str:
        return f"{SCHEME}{self.host}/{self.repository}@{self.digest}"

    def manifest_path(self, reference: str | None = None) -> str:
        """``/v2/<repository>/manifests/<digest or tag>`` (pure)."""
        return f"/v2/{self.repository}/manifests/{reference or self.digest}"

    def blob_path(self, digest: str) -> str:
        """``/v2/<repository>/blobs/<digest>`` (pure)."""
        return f"/v2/{self.repository}/blobs/{digest}"

    def with_digest(self, digest: str) -> Reference:
        return dataclasses.replace(self, digest=digest)


def is_reference(uri: str) -> bool:
    """Whether ``uri`` is an ``oci://`` URI (well formed or not) (pure)."""
    return uri.startswith(SCHEME)


def check_tag(tag: str) -> str:
    """A valid OCI tag or ValueError (pure)."""
    if not _TAG.match(tag):
        raise ValueError(f"{tag!r} is not a valid OCI tag ([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})")
    return tag


def tag_for(revision: str, target: str) -> str:
    """The human-readable tag a published bundle also gets: ``<revision>-<target>``, cut to a valid tag (pure).

    >>> tag_for("1.2.0-3f9a0c1d2e", "x86-avx2")
    '1.2.0-3f9a0c1d2e-x86-avx2'
    """
    text = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{revision}-{target}")
    return check_tag(("v" + text if not re.match(r"[A-Za-z0-9_]", text) else text)[:128])


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(value: Any) -> bytes:
    """The JSON bytes edgefleet pushes (sorted keys, no whitespace), so equal content gives equal digests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclasses.dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @property
    def title(self) -> str | None:
        return self.annotations.get(TITLE) or self.annotations.get(FILEPATH)


@dataclasses.dataclass(frozen=True)
class Artifact:
    """What a registry needs to store one bundle: the blobs and the manifest that names them."""

    manifest: bytes
    digest: str
    config: bytes
    blobs: Mapping[str, bytes]
    """Every blob by digest, the config included."""


def bundle_artifact(
    members: Mapping[str, bytes], bundle_digest: str, annotations: Mapping[str, str] | None = None
) -> Artifact:
    """The OCI artifact of a bundle's members (pure, deterministic: equal members give equal digests).

    >>> members = {"manifest.json": b"{}", "model.onnx": b"m", "signature.json": b"{}"}
    >>> art = bundle_artifact(members, "sha256:" + "0" * 64, {ANNOTATION_NAME: "weld", ANNOTATION_VERSION: "1.0.0"})
    >>> doc = json.loads(art.manifest)
    >>> doc["artifactType"], [layer["annotations"][TITLE] for layer in doc["layers"]]
    ('application/vnd.cncf.model.manifest.v1+json', ['manifest.json', 'model.onnx', 'signature.json'])
    >>> art.digest == sha256(art.manifest)
    True
    """
    notes = dict(annotations or {})
    layers = []
    blobs: dict[str, bytes] = {}
    for name, data in sorted(members.items()):
        check_member(name)
        digest = sha256(data)
        blobs[digest] = data
        layers.append(
            Descriptor(MEDIA_TYPES.get(name, MEMBER_MEDIA_TYPE), digest, len(data), {TITLE: name, FILEPATH: name})
        )
    model_config = {
        "descriptor": {
            k: v
            for k, v in (
                ("name", notes.get(ANNOTATION_NAME)),
                ("version", notes.get(ANNOTATION_VERSION)),
                ("revision", notes.get(ANNOTATION_REVISION)),
            )
            if v
        },
        "config": {"format": "onnx", **({"precision": notes["precision"]} if notes.get("precision") else {})},
        "modelfs": {"type": "layers", "diffIds": [layer.digest for layer in layers]},
    }
    config = canonical(model_config)
    config_digest = sha256(config)
    blobs[config_digest] = config
    manifest_annotations = {k: v for k, v in notes.items() if k != "precision"} | {ANNOTATION_BUNDLE: bundle_digest}
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "artifactType": ARTIFACT_TYPE,
            "config": Descriptor(CONFIG_MEDIA_TYPE, config_digest, len(config)).to_json(),
            "layers": [layer.to_json() for layer in layers],
            "annotations": manifest_annotations,
        }
    )
    return Artifact(manifest, sha256(manifest), config, blobs)


def check_member(name: str) -> str:
    """A bundle member name as a layer title: a plain file name, no path (pure); IntegrityError otherwise."""
    if not _MEMBER.match(name) or name in (".", ".."):
        raise errors.IntegrityError(f"layer title {name!r} is not a plain file name; refusing it as a bundle member")
    return name


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A parsed, checked image manifest."""

    digest: str
    artifact_type: str | None
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str]

    def members(self) -> list[tuple[str, Descriptor]]:
        """The layers as bundle members ``(name, descriptor)``; IntegrityError for untitled or repeated names."""
        out: dict[str, Descriptor] = {}
        for layer in self.layers:
            title = layer.title
            if title is None:
                raise errors.IntegrityError(
                    f"manifest {self.digest}: layer {layer.digest} has no {TITLE} annotation, so it is no bundle member"
                )
            if check_member(title) in out:
                raise errors.IntegrityError(f"manifest {self.digest}: two layers are titled {title!r}")
            out[title] = layer
        return sorted(out.items())

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)


def _descriptor(raw: Any, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise errors.IntegrityError(f"{where} is not an object")
    media, digest, size = raw.get("mediaType"), raw.get("digest"), raw.get("size")
    notes = raw.get("annotations") or {}
    if not isinstance(media, str) or not isinstance(digest, str) or not _DIGEST.match(digest):
        raise errors.IntegrityError(f"{where} needs a mediaType and a sha256 digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise errors.IntegrityError(f"{where} has no valid size")
    if not isinstance(notes, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in notes.items()):
        raise errors.IntegrityError(f"{where}: annotations must map strings to strings")
    return Descriptor(media, digest, size, dict(notes))


def parse_manifest(data: bytes, expected_digest: str) -> Manifest:
    """Check untrusted manifest bytes against the digest that names them, then parse them (pure).

    Raises IntegrityError naming the first problem: a size over :data:`MAX_MANIFEST_BYTES`, a digest mismatch, not
    an OCI image manifest (an index, a Docker schema, invalid JSON), or malformed descriptors.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise errors.IntegrityError(f"manifest is {len(data)} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")
    actual = sha256(data)
    if actual != expected_digest:
        raise errors.IntegrityError(f"manifest digest mismatch: expected {expected_digest}, got {actual}")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.IntegrityError(f"manifest {expected_digest} is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise errors.IntegrityError(f"manifest {expected_digest} is not a JSON object")
    media = doc.get("mediaType")
    if media == INDEX_MEDIA_TYPE or "manifests" in doc:
        raise errors.IntegrityError(
            f"{expected_digest} is an image index, not an artifact manifest; reference the manifest's own digest"
        )
    if doc.get("schemaVersion") != 2 or media not in (None, MANIFEST_MEDIA_TYPE):
        raise errors.IntegrityError(f"{expected_digest} is not an OCI image manifest (mediaType {media!r})")
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers or len(layers) > MAX_LAYERS:
        raise errors.IntegrityError(f"manifest {expected_digest} must list 1 to {MAX_LAYERS} layers")
    notes = doc.get("annotations") or {}
    if not isinstance(notes, dict):
        raise errors.IntegrityError(f"manifest {expected_digest}: annotations must be an object")
    artifact_type = doc.get("artifactType")
    return Manifest(
        digest=expected_digest,
        artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        config=_descriptor(doc.get("config"), f"manifest {expected_digest} config"),
        layers=tuple(_descriptor(layer, f"manifest {expected_digest} layer {i}") for i, layer in enumerate(layers)),
        annotations={str(k): str(v) for k, v in notes.items()},
    )


# -- registry auth ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Credentials:
    """A username and password (or identity token) for one registry host."""

    username: str
    password: str = dataclasses.field(repr=False)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def credentials_from_docker_config(doc: Mapping[str, Any], where: str) -> dict[str, Credentials]:
    """Host -> credentials from a Docker ``config.json`` document (``auths`` with ``auth`` or username/password).

    >>> creds = credentials_from_docker_config({"auths": {"r:5000": {"auth": "dTpw"}}}, "x")
    >>> creds["r:5000"]
    Credentials(username='u')
    """
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        raise errors.InvalidSpecError(f"{where}: expected a Docker config with an 'auths' object", "InvalidConfig")
    out: dict[str, Credentials] = {}
    for raw_host, entry in auths.items():
        host = urlsplit(raw_host).netloc if "://" in raw_host else raw_host.rstrip("/")
        if not isinstance(entry, dict):
            raise errors.InvalidSpecError(f"{where}: auths.{raw_host} must be an object", "InvalidConfig")
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(str(entry["auth"]), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as exc:
                raise errors.InvalidSpecError(
                    f"{where}: auths.{raw_host}.auth is not base64 user:password", "InvalidConfig"
                ) from exc
        else:
            user, password = str(entry.get("username") or ""), str(entry.get("password") or "")
        if entry.get("identitytoken"):
            user, password = "<token>", str(entry["identitytoken"])
        if not user:
            raise errors.InvalidSpecError(f"{where}: auths.{raw_host} has no credentials", "InvalidConfig")
        out[host] = Credentials(user, password)
    return out


@dataclasses.dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` challenge: ``Basic`` or ``Bearer`` (the token flow of the distribution spec)."""

    scheme: str
    params: Mapping[str, str]

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|$)')


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` header, None when it is not Basic or Bearer (pure).

    >>> challenge = parse_challenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull"')
    >>> challenge.scheme, dict(challenge.params)
    ('bearer', {'realm': 'https://auth.example/token', 'service': 'reg', 'scope': 'repository:a:pull'})
    >>> parse_challenge('Basic realm="Registry Realm"').scheme
    'basic'
    """
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("basic", "bearer"):
        return None
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None or match.end() == position:
            break
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[match.group(1).lower()] = value.replace('\\"', '"')
        position = match.end()
    return Challenge(scheme, params)


def repository_scope(repository: str, actions: Sequence[str]) -> str:
    """The token scope for ``repository`` (pure): ``repository:edgefleet/weld:pull,push``."""
    return f"repository:{repository}:{','.join(actions)}"


__all__ = [
    "ANNOTATION_BUNDLE",
    "ANNOTATION_NAME",
    "ANNOTATION_REVISION",
    "ANNOTATION_VERSION",
    "ARTIFACT_TYPE",
    "CONFIG_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "MAX_MANIFEST_BYTES",
    "SCHEME",
    "TITLE",
    "WEIGHT_MEDIA_TYPE",
    "Artifact",
    "Challenge",
    "Credentials",
    "Descriptor",
    "Manifest",
    "Reference",
    "bundle_artifact",
    "check_member",
    "check_tag",
    "credentials_from_docker_config",
    "is_reference",
    "parse_challenge",
    "parse_manifest",
    "repository_scope",
    "tag_for",
]
