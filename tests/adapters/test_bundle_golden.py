"""Golden samples as their own signed bundle member (schema version 2): pinned, bounded, decoded as a device does."""

from __future__ import annotations

import io
import tarfile
from typing import Any

import numpy as np
import pytest

from edgefleet.adapters import bundle
from edgefleet.core import errors, golden


@pytest.fixture(scope="module")
def key() -> bundle.ed25519.Ed25519PrivateKey:
    return bundle.generate_key()


def members(count: int = 2, scale: float = 1.0) -> tuple[dict[str, Any], bytes]:
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(count):
        x = (rng.standard_normal((1, 4)) * scale).astype(np.float32)
        samples.append([(golden.Layout("x", "float32", (1, 4)), x), (golden.Layout("y", "float32", (1, 4)), x * 2)])
    described, member = golden.encode(samples, [1] * count)
    manifest = {
        "schemaVersion": 2,
        "model": {"name": "weld", "version": "1.0.0"},
        "golden": {"member": golden.MEMBER, "samples": described, "rtol": 1e-3, "atol": 1e-4},
    }
    return manifest, member


def _pack(parts: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(parts.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _unpack(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {i.name: tar.extractfile(i).read() for i in tar}  # type: ignore[union-attr]


def test_the_golden_member_is_pinned_signed_and_decoded(key: bundle.ed25519.Ed25519PrivateKey) -> None:
    manifest, member = members()
    digest, data = bundle.build(manifest, b"model-bytes", key, member)
    opened = bundle.open_bundle(data, [key.public_key()], digest)
    assert opened.golden == member
    assert set(opened.manifest["files"]) == {"model.onnx", "golden.bin"}
    decoded = bundle.golden_samples(opened)
    assert len(decoded.samples) == 2
    for sample in decoded.samples:
        assert np.array_equal(sample.outputs["y"], sample.inputs["x"] * 2)
    assert sorted(_unpack(data)) == ["golden.bin", "manifest.json", "model.onnx", "signature.json"]


def test_a_changed_or_missing_golden_member_is_tampering(key: bundle.ed25519.Ed25519PrivateKey) -> None:
    manifest, member = members()
    _, data = bundle.build(manifest, b"model-bytes", key, member)
    parts = _unpack(data)
    other = members(scale=2.0)[1]
    with pytest.raises(bundle.BundleError, match=r"golden.bin does not match the sha256/size pinned"):
        bundle.open_bundle(_pack({**parts, "golden.bin": other}), [key.public_key()])
    without = {k: v for k, v in parts.items() if k != "golden.bin"}
    with pytest.raises(bundle.BundleError, match=r"pins golden.bin but the bundle has no such member"):
        bundle.open_bundle(_pack(without), [key.public_key()])


def test_limits_name_the_member_and_the_limit(key: bundle.ed25519.Ed25519PrivateKey) -> None:
    manifest, _ = members()
    parts = _unpack(bundle.build(manifest, b"m", key, members()[1])[1])
    too_big = bytes(bundle.MAX_GOLDEN_BYTES + 1)
    with pytest.raises(bundle.BundleError, match=r"'golden.bin' is 262145 bytes, over the 262144-byte limit"):
        bundle.open_bundle(_pack({**parts, "golden.bin": too_big}), [key.public_key()])
    huge = b" " * (bundle.MAX_MANIFEST_BYTES + 1)
    with pytest.raises(bundle.BundleError, match=r"'manifest.json' is 16777217 bytes, over the 16777216-byte limit"):
        bundle.open_bundle(_pack({**parts, "manifest.json": huge}), [key.public_key()])


def test_build_refuses_to_publish_what_a_device_would_reject(key: bundle.ed25519.Ed25519PrivateKey) -> None:
    manifest, member = members()
    with pytest.raises(bundle.BundleError, match=r"refusing to publish.*over the 262144-byte limit"):
        bundle.build(manifest, b"m", key, bytes(bundle.MAX_GOLDEN_BYTES + 1))
    lying = {**manifest, "golden": {**manifest["golden"], "samples": members(count=3)[0]["golden"]["samples"]}}
    with pytest.raises(bundle.BundleError, match=r"refusing to publish.*does not unpack to exactly"):
        bundle.build(lying, b"m", key, member)


def test_a_bomb_in_the_golden_member_is_stopped_at_the_declared_size() -> None:
    manifest, _ = members(count=1)
    import zlib

    bomb = zlib.compress(bytes(64 * 1024 * 1024), 9)  # 64 MiB of zeros in ~64 KiB
    assert len(bomb) <= golden.MAX_MEMBER_BYTES
    with pytest.raises(errors.IntegrityError, match="does not unpack to exactly the 32 bytes"):
        golden.decode(manifest["golden"], bomb)


def test_schema_1_bundles_with_inline_samples_still_install(key: bundle.ed25519.Ed25519PrivateKey) -> None:
    x = np.ones((1, 4), np.float32)
    inline = {
        "schemaVersion": 1,
        "model": {"name": "weld", "version": "0.9.0"},
        "golden": {
            "samples": [{"inputs": {"x": bundle.encode_array(x)}, "outputs": {"y": bundle.encode_array(x * 2)}}],
            "rtol": 1e-3,
            "atol": 1e-4,
        },
    }
    digest, data = bundle.build(inline, b"m", key)
    opened = bundle.open_bundle(data, [key.public_key()], digest)
    assert opened.golden is None
    (sample,) = bundle.golden_samples(opened).samples
    assert np.array_equal(sample.outputs["y"], x * 2)
