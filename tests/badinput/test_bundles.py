"""Hostile artifact bundles: path traversal, links, duplicates, truncation, garbage - all rejected with a reason."""

from __future__ import annotations

import io
import tarfile

import pytest

from edgefleet.adapters import bundle
from edgefleet.testing.badinput import COUNTS as tried

KEY = bundle.generate_key()


def tar_of(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def regular(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, b""


GOOD_DIGEST, GOOD = bundle.build({"schemaVersion": 1}, b"model", KEY)

CASES: dict[str, tuple[bytes, str]] = {
    "random bytes": (b"\x00garbage" * 100, "not a valid bundle archive|missing"),
    "empty": (b"", "not a valid bundle archive"),
    "truncated": (GOOD[: len(GOOD) // 2], "canonical form"),
    "path traversal": (tar_of([regular("../../etc/cron.d/x")]), "unexpected member"),
    "absolute path": (tar_of([regular("/etc/passwd")]), "unexpected member"),
    "nested path": (tar_of([regular("a/model.onnx")]), "unexpected member"),
    "symlink member": (tar_of([link("model.onnx", "/etc/shadow", tarfile.SYMTYPE)]), "not a regular file"),
    "hardlink member": (tar_of([link("model.onnx", "manifest.json", tarfile.LNKTYPE)]), "not a regular file"),
    "duplicate member": (tar_of([regular("manifest.json"), regular("manifest.json")]), "appears twice"),
    "huge manifest": (tar_of([regular("manifest.json", b" " * (17 * 1024 * 1024))]), "over the .*limit"),
    # Verify before parse: an unsigned manifest is never read, whatever it holds.
    "manifest not json": (
        tar_of([regular("manifest.json", b"{"), regular("model.onnx"), regular("signature.json", b"{}")]),
        "signature.json is malformed",
    ),
    "unsigned": (
        tar_of([regular("manifest.json", b"{}"), regular("model.onnx"), regular("signature.json", b"{}")]),
        "signature.json is malformed",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_bundle_is_rejected_with_a_reason(name: str) -> None:
    tried["hostile bundles"] += 1
    data, reason = CASES[name]
    with pytest.raises(bundle.BundleError, match=reason):
        bundle.open_bundle(data, [KEY.public_key()])


def test_signature_swapped_from_another_bundle_is_rejected() -> None:
    tried["hostile bundles"] += 1
    _, other = bundle.build({"schemaVersion": 1, "model": {"version": "evil"}}, b"model", KEY)
    with tarfile.open(fileobj=io.BytesIO(GOOD)) as good, tarfile.open(fileobj=io.BytesIO(other)) as evil:
        members = {m.name: good.extractfile(m).read() for m in good}  # type: ignore[union-attr]
        members["manifest.json"] = evil.extractfile("manifest.json").read()  # type: ignore[union-attr]
    forged = tar_of([regular(n, d) for n, d in sorted(members.items())])
    with pytest.raises(bundle.BundleError, match="does not verify"):
        bundle.open_bundle(forged, [KEY.public_key()])
