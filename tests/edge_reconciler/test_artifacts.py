"""Hostile or broken artifacts are rejected with a clear status while the current version keeps serving;
interrupted downloads resume with an HTTP Range request (real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import dataclasses
import io
import tarfile
from collections.abc import Callable

import pytest

from edgefleet.adapters import bundle
from edgefleet.testing import onnx_models
from edgefleet.testing.agent_harness import FAST, Harness, desired, eventually


def _flip(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]


def _traversing(tb: onnx_models.TestBundle) -> bytes:
    """The bundle plus a ``../evil`` member: same tar otherwise."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(tb.data)) as src,
        tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as dst,
    ):
        for info in src:
            dst.addfile(info, src.extractfile(info))
        evil = tarfile.TarInfo("../evil")
        evil.size = 4
        dst.addfile(evil, io.BytesIO(b"pwnd"))
    return out.getvalue()


Case = tuple[str, Callable[[Harness, onnx_models.TestBundle], tuple[bytes, str, int]], str]
CASES: list[Case] = [
    # (id, how to publish -> (served bytes, digest the spec pins, sizeBytes in the spec), expected message start)
    ("corrupted", lambda h, tb: (_flip(tb.data), tb.digest, len(tb.data)), "VerificationFailed: digest mismatch"),
    ("truncated", lambda h, tb: (tb.data[:-512], tb.digest, len(tb.data)), "Truncated: "),
    ("oversized", lambda h, tb: (tb.data + b"\0" * 4096, tb.digest, len(tb.data)), "Oversized: "),
    (
        "wrongly-signed",
        lambda h, tb: (
            (other := onnx_models.make_bundle(bundle.generate_key(), tb.name, tb.version)).data,
            other.digest,
            len(other.data),
        ),
        "VerificationFailed: signature by key",
    ),
    (
        "path-traversing",
        lambda h, tb: ((d := _traversing(tb)), bundle.sha256_digest(d), len(d)),
        "VerificationFailed: unexpected member '../evil'",
    ),
]


@pytest.mark.parametrize(("case", "make", "message"), CASES, ids=[c[0] for c in CASES])
async def test_bad_artifact_is_rejected(
    harness: Harness, case: str, make: Callable[[Harness, onnx_models.TestBundle], tuple[bytes, str, int]], message: str
) -> None:
    good, good_url = harness.publish("demo", "1.0.0")
    candidate = onnx_models.make_bundle(harness.key, "demo", "2.0.0")
    data, digest, size = make(harness, candidate)
    url = harness.artifacts.publish(f"bad-{case}.bundle", data)
    spec = desired(dataclasses.replace(candidate, digest=digest), url, size=size)
    async with harness.running() as agent:
        harness.want(desired(good, good_url))
        await eventually(lambda: harness.served_version() == "1.0.0")
        harness.want(spec)
        await eventually(lambda: harness.model_status().get("state") == "Failed")
        ms = harness.model_status()
        assert ms["message"].startswith(message), ms["message"]
        assert ms["activeDigest"] == good.digest and harness.served_version() == "1.0.0"
        assert agent.store.model("demo").rejected == {digest: "Failed"}
    state = harness.root / "state"
    assert not (harness.root / "evil").exists() and not (state / "evil").exists()
    assert sorted(p.name for p in (state / "slots" / "demo").iterdir()) == ["a.bundle"]
    assert list((state / "downloads").iterdir()) == []


async def test_artifact_over_device_limit_is_not_downloaded(harness: Harness) -> None:
    tb, url = harness.publish("demo", "1.0.0")
    settings = dataclasses.replace(FAST, max_bundle_bytes=len(tb.data) - 1)
    async with harness.running(settings):
        harness.want(desired(tb, url))
        await eventually(lambda: harness.model_status().get("state") == "Failed")
    assert "maxBundleBytes" in harness.model_status()["message"]
    assert harness.artifacts.requests == []


async def test_interrupted_download_resumes_with_range(harness: Harness) -> None:
    tb = onnx_models.make_bundle(harness.key, "demo", "1.0.0")
    url = harness.artifacts.publish(tb.filename, tb.data, drop_after=len(tb.data) // 3)
    async with harness.running():
        harness.want(desired(tb, url))
        await eventually(lambda: harness.served_version() == "1.0.0")
    ranges = [r.headers.get("Range") for r in harness.artifacts.requests]
    assert ranges[0] is None
    assert any(r is not None and r.startswith("bytes=") and r != "bytes=0-" for r in ranges[1:]), ranges
