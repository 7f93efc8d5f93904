"""Artifact bundles: the signed, content-addressed unit the operator publishes and devices install.

A bundle is an uncompressed POSIX tar written deterministically (sorted members, mtime 0, uid/gid 0, mode 0644)
holding these regular files and no others:

``manifest.json``
    Canonical JSON (sorted keys, no whitespace): model name/version, source digest, compile options, chosen
    variant and why, input/output signature, golden samples with tolerances, measurements, and ``files``: the
    sha256 and size of every other member except the signature (``{"model.onnx": {...}, "golden.bin": {...}}``).
``model.onnx``
    The compiled model.
``golden.bin`` (schema version 2; optional)
    The golden samples as one zlib stream of tensors, described by the manifest's ``golden.samples``
    (:mod:`edgefleet.core.golden`), at most :data:`MAX_GOLDEN_BYTES` (256 KiB). Schema version 1 bundles carry
    their golden samples base64 inside the manifest instead, and are still accepted.
``signature.json``
    ``{"algorithm": "ed25519", "keyId": ..., "payloadSha256": sha256(manifest.json), "signature": base64}``.
    The manifest pins every other member's sha256, so signing the manifest signs them. A verified bundle must also
    be byte-identical to the canonical packing of its members, so no byte of it escapes verification.

The bundle's identity is ``sha256:<hex>`` of the whole tar. Ed25519 signatures are deterministic (RFC 8032), so
the same inputs and key give byte-identical bundles and the same digest.

Bundles come from the network: :func:`open_bundle` treats the bytes as hostile. Nothing but the small signature
envelope is interpreted before the signature over ``manifest.json`` checks out (size limits per member, only the
expected member names, regular files only, no links or paths come first, and are structural); then the manifest is
parsed with depth and size limits and validated into a typed :class:`Manifest` (:func:`parse_manifest`, the one place
the manifest's shape is known), and every member it pins is checked against its sha256 and size. Every failure is a
:class:`BundleError`; no other exception escapes, whatever the bytes. :func:`build` opens every bundle it writes the
same way (and decodes its golden samples, as a device does) before returning it, so a publisher never writes a
bundle a device would reject.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

import numpy as np
import pydantic
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.core import errors, golden, tensors

MANIFEST = "manifest.json"
MODEL = "model.onnx"
SIGNATURE = "signature.json"
GOLDEN = golden.MEMBER
REQUIRED = (MANIFEST, MODEL, SIGNATURE)
MEMBERS = (MANIFEST, MODEL, SIGNATURE, GOLDEN)
PINNED = (MODEL, GOLDEN)  # members the manifest pins by sha256 and size
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_SIGNATURE_BYTES = 4096
MAX_GOLDEN_BYTES = golden.MAX_MEMBER_BYTES
MAX_BUNDLE_BYTES = 2 * 1024**3
MAX_GOLDEN_SAMPLES = 4096
# The size limit of each member other than the model (which only the bundle limit bounds).
MEMBER_LIMITS = {MANIFEST: MAX_MANIFEST_BYTES, SIGNATURE: MAX_SIGNATURE_BYTES, GOLDEN: MAX_GOLDEN_BYTES}


class BundleError(errors.IntegrityError):
    """A bundle is malformed, tampered with, or signed by an untrusted key. The message says which."""


# --- the manifest's shape: the one place it is known -------------------------------------------------------------
# Only what a device acts on is typed; every other key is kept as it is (extra="allow"), so producers can add fields
# (and move golden samples into a member of their own) without a device refusing the bundle.

_Hex64 = Annotated[str, pydantic.Field(pattern=r"^[a-f0-9]{64}$")]
_Text = Annotated[str, pydantic.Field(max_length=256)]
_Tolerance = Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)]


def _wire_dtype(name: str) -> str:
    if name not in tensors.DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(sorted(tensors.DTYPES))}")
    return name


class _Part(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="allow", strict=True)


class FilePin(_Part):
    """The sha256 and size a signed manifest pins for one member."""

    sha256: _Hex64
    size: Annotated[int, pydantic.Field(ge=0)]


class ModelInfo(_Part):
    """Which model and version a bundle holds (a device installs a bundle only when both match its spec)."""

    name: _Text | None = None
    version: _Text | None = None


class Tensor(_Part):
    """An encoded tensor (:mod:`edgefleet.core.tensors`): numeric dtype, shape, base64 data."""

    dtype: Annotated[str, pydantic.AfterValidator(_wire_dtype)]
    shape: Annotated[list[Annotated[int, pydantic.Field(ge=0)]], pydantic.Field(max_length=tensors.MAX_RANK)]
    data: str

    def array(self) -> np.ndarray[Any, Any]:
        """The decoded array; raises BundleError when data and shape disagree."""
        return decode_array(self.model_dump())


class GoldenSample(_Part):
    """One golden sample: inputs and the outputs the model must reproduce from them."""

    inputs: Annotated[dict[_Text, Tensor], pydantic.Field(min_length=1, max_length=64)]
    outputs: Annotated[dict[_Text, Tensor], pydantic.Field(max_length=64)] = {}


class Golden(_Part):
    """Schema 1: the smoke test a device runs before switching, inline: samples and the tolerances of
    ``numpy.allclose``."""

    samples: Annotated[list[GoldenSample], pydantic.Field(max_length=MAX_GOLDEN_SAMPLES)] = []
    rtol: _Tolerance = 1e-5
    atol: _Tolerance = 1e-6


class GoldenMember(_Part):
    """Schema 2: the golden samples live in the ``golden.bin`` member; ``samples`` describes its tensors (checked
    in full by :func:`edgefleet.core.golden.layouts` when they are decoded)."""

    member: Literal["golden.bin"]
    samples: Annotated[list[Any], pydantic.Field(min_length=1, max_length=golden.MAX_SAMPLES)]
    rtol: _Tolerance = 1e-5
    atol: _Tolerance = 1e-6


class Manifest(_Part):
    """The typed view of a signed ``manifest.json``: what the device checks and acts on."""

    files: dict[_Text, FilePin]
    model: ModelInfo | None = None
    golden: Annotated[GoldenMember | Golden, pydantic.Field(union_mode="left_to_right")] = Golden()


def parse_manifest(raw: bytes) -> tuple[dict[str, Any], Manifest]:
    """Parse and validate manifest bytes (total: raises only BundleError); returns the raw object and its typed view.

    >>> raw, m = parse_manifest(b'{"files":{"model.onnx":{"sha256":"' + b"0" * 64 + b'","size":1}}}')
    >>> m.files["model.onnx"].size, m.golden.samples
    (1, [])
    """
    value = _load_json(raw, "manifest.json")
    if not isinstance(value, dict):
        raise BundleError("manifest.json must be a JSON object")
    try:
        typed = Manifest.model_validate(value)
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[:3]
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in first)
        raise BundleError(f"manifest.json is malformed ({exc.error_count()} errors): {where}") from None
    return value, typed


def _load_json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise BundleError(f"{what} nests too deeply") from None


class _Envelope(_Part):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", strict=True)

    algorithm: Literal["ed25519"]
    key_id: Annotated[str, pydantic.Field(alias="keyId", max_length=64)]
    payload_sha256: Annotated[_Hex64, pydantic.Field(alias="payloadSha256")]
    signature: Annotated[str, pydantic.Field(max_length=128)]


@dataclasses.dataclass(frozen=True)
class Bundle:
    """A verified bundle: its digest, manifest (raw object and typed view), model bytes and, when it has one, the
    ``golden.bin`` member (verified against the manifest's pin)."""

    digest: str
    manifest: dict[str, Any]
    model: bytes
    key_id: str
    parsed: Manifest
    golden: bytes | None = None


def encode_array(array: np.ndarray[Any, Any]) -> dict[str, Any]:
    """Encode a tensor for a manifest (:func:`edgefleet.core.tensors.encode`, pure).

    Golden samples use this form: ``{"inputs": {name: encoded}, "outputs": {name: encoded}}``.
    """
    return tensors.encode(array)


def decode_array(encoded: Mapping[str, Any]) -> np.ndarray[Any, Any]:
    """Inverse of :func:`encode_array`; raises BundleError on inconsistent dtype/shape/data."""
    try:
        return tensors.decode(encoded)
    except errors.IntegrityError as exc:
        raise BundleError(str(exc)) from exc


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON encoding used for manifests and signatures (pure)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data`` (pure)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def key_id(public_key: ed25519.Ed25519PublicKey) -> str:
    """Short stable identifier of a public key: first 16 hex chars of sha256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key() -> ed25519.Ed25519PrivateKey:
    """A new ed25519 signing key."""
    return ed25519.Ed25519PrivateKey.generate()


def private_key_pem(key: ed25519.Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM of a signing key (how it is stored in a Kubernetes Secret or a file)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(key: ed25519.Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM of a trust key (how devices are configured)."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(pem: bytes) -> ed25519.Ed25519PrivateKey:
    """Parse a PEM signing key; raises BundleError when it is not ed25519."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"signing key is not a valid unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise BundleError("signing key must be ed25519")
    return key


def load_public_key(pem: bytes) -> ed25519.Ed25519PublicKey:
    """Parse a PEM trust key; raises BundleError when it is not ed25519."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"trust key is not a valid PEM public key: {exc}") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise BundleError("trust key must be ed25519")
    return key


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info, io.BytesIO(data)


def build(
    manifest: Mapping[str, Any],
    model: bytes,
    signing_key: ed25519.Ed25519PrivateKey,
    golden_member: bytes | None = None,
) -> tuple[str, bytes]:
    """Assemble and sign a bundle; returns ``(digest, bundle_bytes)``. Deterministic for equal inputs.

    ``manifest`` must be JSON-serialisable without NaN; its ``files`` entry is filled in here. ``golden_member`` is
    the ``golden.bin`` member its ``golden`` entry describes (schema version 2). The result is opened with
    :func:`open_bundle` and its golden samples (when the manifest has them; a device refuses a bundle without) are
    decoded, as a device does, before it is returned: a bundle that would be rejected raises :class:`BundleError`
    saying why ("refusing to publish ..."), and nothing is returned.
    """
    members = {MODEL: model} if golden_member is None else {MODEL: model, GOLDEN: golden_member}
    digest, data = _seal(manifest, members, signing_key)
    try:
        opened = open_bundle(data, [signing_key.public_key()])
        if "golden" in manifest:
            golden_samples(opened)
    except BundleError as exc:
        raise BundleError(f"refusing to publish a bundle a device would reject: {exc}") from exc
    return digest, data


def _seal(
    manifest: Mapping[str, Any], members: Mapping[str, bytes], signing_key: ed25519.Ed25519PrivateKey
) -> tuple[str, bytes]:
    """Pin ``members`` in the manifest, sign it and pack, with no check of the result (:func:`build` checks; the
    test harness uses this to craft signed bundles a device must reject)."""
    body = dict(manifest)
    body["files"] = {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for name, data in members.items()
    }
    manifest_bytes = canonical_json(body)
    signature = _signature_document(key_id(signing_key.public_key()), manifest_bytes, signing_key.sign(manifest_bytes))
    data = _pack({**members, MANIFEST: manifest_bytes, SIGNATURE: canonical_json(signature)})
    return sha256_digest(data), data


def _signature_document(kid: str, manifest_bytes: bytes, raw_signature: bytes) -> dict[str, str]:
    return {
        "algorithm": "ed25519",
        "keyId": kid,
        "payloadSha256": hashlib.sha256(manifest_bytes).hexdigest(),
        "signature": base64.b64encode(raw_signature).decode(),
    }


def _pack(members: Mapping[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(members.items()):
            tar.addfile(*_member(name, data))
    return out.getvalue()


def pack(members: Mapping[str, bytes]) -> bytes:
    """The canonical tar of ``members`` (sorted names, mtime 0, uid/gid 0, mode 0644): the only packing a verified
    bundle may have, so members fetched separately (the layers of an OCI artifact) re-pack to the signed bytes."""
    return _pack(members)


def members(data: bytes) -> dict[str, bytes]:
    """The members of a bundle tar by name, without verifying anything but the tar's structure (regular files with
    plain names, each once, the non-model members under the manifest size limit); BundleError otherwise.

    The caller still verifies the bundle (:func:`open_bundle`); this is for taking a trusted bundle apart, e.g. to
    push its members as the layers of an OCI artifact.
    """
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                if not info.isreg() or "/" in info.name or info.name in (".", ".."):
                    raise BundleError(f"member {info.name!r} is not a regular file with a plain name")
                if info.name in out:
                    raise BundleError(f"member {info.name!r} appears twice")
                if info.name != MODEL and info.size > MAX_MANIFEST_BYTES:
                    raise BundleError(f"member {info.name!r} is {info.size} bytes, over the limit")
                extracted = tar.extractfile(info)
                if extracted is None:
                    raise BundleError(f"member {info.name!r} cannot be read")
                out[info.name] = extracted.read()
    except (tarfile.TarError, EOFError) as exc:
        raise BundleError(f"not a valid bundle archive: {exc}") from exc
    return out


def open_bundle(
    data: bytes,
    trusted_keys: Iterable[ed25519.Ed25519PublicKey],
    expected_digest: str | None = None,
) -> Bundle:
    """Verify untrusted bundle bytes and return their content.

    Checks, in order: size, whole-bundle digest (when given), tar structure (the three required members and at most
    the optional ``golden.bin``, regular files, plain names, each member within its limit), the signature envelope,
    the ed25519 signature over the manifest bytes against ``trusted_keys``, canonical form, and only then the
    manifest (JSON, typed validation) and every pinned member's sha256 and size against it. Raises
    :class:`BundleError` naming the first check that failed, and nothing else. A digest mismatch does not say what
    the bytes hash to: a device must not become an oracle about what a URI serves.
    """
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle is {len(data)} bytes, over the {MAX_BUNDLE_BYTES}-byte limit")
    digest = sha256_digest(data)
    if expected_digest is not None and digest != expected_digest:
        raise BundleError(f"digest mismatch: the downloaded bytes are not {expected_digest}")
    members = _members(data)
    envelope = _envelope(members[SIGNATURE])
    try:
        raw_signature = base64.b64decode(envelope.signature, validate=True)
    except ValueError:
        raise BundleError("signature is not valid base64") from None
    keys = list(trusted_keys)
    if not keys:
        raise BundleError("no trust keys configured; refusing to accept an unverifiable bundle")
    for key in keys:
        try:
            key.verify(raw_signature, members[MANIFEST])
        except InvalidSignature:
            continue
        # Only the canonical byte layout is accepted, so padding, headers and trailing blocks are covered too and
        # one bundle has exactly one digest.
        expected_signature = _signature_document(key_id(key), members[MANIFEST], raw_signature)
        if members[SIGNATURE] != canonical_json(expected_signature) or _pack(members) != data:
            raise BundleError("bundle is not in canonical form (headers, padding or trailer differ; tampered?)")
        manifest, parsed = parse_manifest(members[MANIFEST])
        for name in PINNED:
            pinned = parsed.files.get(name)
            if name not in members:
                if pinned is not None:
                    raise BundleError(f"the manifest pins {name} but the bundle has no such member")
                if name == MODEL:
                    raise BundleError("the manifest does not pin model.onnx")
                continue
            content = members[name]
            if pinned is None or pinned.sha256 != hashlib.sha256(content).hexdigest() or pinned.size != len(content):
                raise BundleError(f"{name} does not match the sha256/size pinned in the manifest (tampered)")
        return Bundle(
            digest=digest,
            manifest=manifest,
            model=members[MODEL],
            key_id=key_id(key),
            parsed=parsed,
            golden=members.get(GOLDEN),
        )
    raise BundleError(f"signature by key {envelope.key_id!r} does not verify against any trusted key")


def _members(data: bytes) -> dict[str, bytes]:
    """The members of a bundle tar, structurally checked (no member's content is interpreted)."""
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                if info.name not in MEMBERS:
                    raise BundleError(f"unexpected member {info.name!r} (only {', '.join(MEMBERS)} are allowed)")
                if not info.isreg():
                    raise BundleError(f"member {info.name!r} is not a regular file")
                if info.name in members:
                    raise BundleError(f"member {info.name!r} appears twice")
                limit = MEMBER_LIMITS.get(info.name)
                if limit is not None and info.size > limit:
                    raise BundleError(
                        f"member {info.name!r} is {info.size} bytes, over the {limit}-byte limit for {info.name}"
                    )
                extracted = tar.extractfile(info)
                if extracted is None:
                    raise BundleError(f"member {info.name!r} cannot be read")
                members[info.name] = extracted.read()
    except BundleError:
        raise
    except Exception as exc:  # tarfile raises several types (ReadError, EOFError, ValueError...) on hostile bytes
        raise BundleError(f"not a valid bundle archive: {type(exc).__name__}: {exc}") from None
    missing = [m for m in REQUIRED if m not in members]
    if missing:
        raise BundleError(f"bundle is missing {', '.join(missing)}")
    return members


def _envelope(raw: bytes) -> _Envelope:
    """The signature envelope: a small JSON object of four strings; the only thing read before verification."""
    value = _load_json(raw, "signature.json")
    if not isinstance(value, dict):
        raise BundleError("signature.json must be a JSON object")
    try:
        return _Envelope.model_validate(value)
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise BundleError(f"signature.json is malformed: {where}: {first['msg']}") from None


def golden_samples(opened: Bundle) -> golden.Golden:
    """The golden samples of a verified bundle, decoded and bounded; raises only BundleError (malformed, missing).

    Schema version 2 keeps them in ``golden.bin`` (:func:`edgefleet.core.golden.decode`); version 1 inline in the
    manifest as base64 tensors (:class:`Golden`). A manifest without samples is an error: a model is never switched
    to untested.
    """
    entry = opened.parsed.golden
    try:
        if isinstance(entry, GoldenMember):
            if opened.golden is None:
                raise BundleError(f"the manifest's golden samples live in {GOLDEN}, which the bundle lacks")
            return golden.decode(opened.manifest["golden"], opened.golden)
        if opened.golden is not None:
            raise BundleError(f"the bundle has {GOLDEN} but the manifest's golden entry does not describe it")
        if not entry.samples:
            raise BundleError("the manifest has no golden samples; a model is never switched to untested")
        decoded = [
            golden.Sample(
                {name: tensor.array() for name, tensor in sample.inputs.items()},
                {name: tensor.array() for name, tensor in sample.outputs.items()},
            )
            for sample in entry.samples
        ]
        return golden.Golden(tuple(decoded), entry.rtol, entry.atol)
    except BundleError:
        raise
    except errors.IntegrityError as exc:
        raise BundleError(str(exc)) from None
    except Exception as exc:  # numpy on hostile shapes/bytes raises several types; this function is total
        raise BundleError(f"golden samples are malformed: {type(exc).__name__}: {exc}") from None


__all__ = [
    "Bundle",
    "BundleError",
    "FilePin",
    "Golden",
    "GoldenMember",
    "GoldenSample",
    "Manifest",
    "ModelInfo",
    "Tensor",
    "build",
    "canonical_json",
    "decode_array",
    "encode_array",
    "generate_key",
    "golden_samples",
    "key_id",
    "load_private_key",
    "load_public_key",
    "members",
    "open_bundle",
    "pack",
    "parse_manifest",
    "private_key_pem",
    "public_key_pem",
    "sha256_digest",
]
