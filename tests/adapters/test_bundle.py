"""Signed bundles: deterministic, content-addressed, verified before use."""

from __future__ import annotations

import numpy as np
import pytest

from edgefleet.adapters import bundle


@pytest.fixture(scope="module")
def key() -> bundle.ed25519.Ed25519PrivateKey:
    return bundle.load_private_key(bundle.private_key_pem(bundle.generate_key()))


def manifest() -> dict[str, object]:
    sample = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    return {
        "schemaVersion": 1,
        "model": {"name": "weld", "version": "1.0.0"},
        "golden": {
            "samples": [{"inputs": {"x": bundle.encode_array(sample)}, "outputs": {"y": bundle.encode_array(sample)}}],
            "rtol": 1e-3,
            "atol": 1e-4,
        },
    }


def test_same_inputs_give_byte_identical_bundles(key: bundle.ed25519.Ed25519PrivateKey) -> None:
    a = bundle.build(manifest(), b"model-bytes", key)
    b = bundle.build(manifest(), b"model-bytes", key)
    assert a == b
    assert a[0] == bundle.sha256_digest(a[1])


def test_round_trip_and_arrays(key: bundle.ed25519.Ed25519PrivateKey) -> None:
    digest, data = bundle.build(manifest(), b"model-bytes", key)
    opened = bundle.open_bundle(data, [key.public_key()], digest)
    assert opened.model == b"model-bytes"
    assert opened.key_id == bundle.key_id(key.public_key())
    restored = bundle.decode_array(opened.manifest["golden"]["samples"][0]["inputs"]["x"])
    np.testing.assert_array_equal(restored, np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4))


def test_any_single_byte_flip_is_detected(key: bundle.ed25519.Ed25519PrivateKey) -> None:
    _, data = bundle.build(manifest(), b"model-bytes" * 10, key)
    for offset in range(0, len(data), 97):
        tampered = bytearray(data)
        tampered[offset] ^= 0x01
        with pytest.raises(bundle.BundleError):
            bundle.open_bundle(bytes(tampered), [key.public_key()])


def test_wrong_key_and_no_keys(key: bundle.ed25519.Ed25519PrivateKey) -> None:
    _, data = bundle.build(manifest(), b"m", key)
    with pytest.raises(bundle.BundleError, match="does not verify against any trusted key"):
        bundle.open_bundle(data, [bundle.generate_key().public_key()])
    with pytest.raises(bundle.BundleError, match="no trust keys"):
        bundle.open_bundle(data, [])


def test_digest_mismatch_is_reported(key: bundle.ed25519.Ed25519PrivateKey) -> None:
    _, data = bundle.build(manifest(), b"m", key)
    with pytest.raises(bundle.BundleError, match="digest mismatch"):
        bundle.open_bundle(data, [key.public_key()], "sha256:" + "0" * 64)
