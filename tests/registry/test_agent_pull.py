"""Agents pull bundles from a real OCI registry (distribution 2.8 with TLS and htpasswd) by digest and verify them as
they verify HTTP downloads; every failure leaves the device on a verified model with a clear status, and the
registry credentials appear in no log line and no status."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from pathlib import Path

import pytest

from edgefleet.adapters import bundle, oci
from edgefleet.core import oci as core_oci
from edgefleet.edge_reconciler import config
from edgefleet.testing import onnx_models, registry
from edgefleet.testing.agent_harness import Harness, desired, eventually

pytestmark = pytest.mark.slow


def _secrets() -> list[str]:
    user, password = registry.TEST_CREDENTIALS
    return [password, base64.b64encode(f"{user}:{password}".encode()).decode()]


def assert_no_credentials(*texts: str) -> None:
    for text in texts:
        for secret in _secrets():
            assert secret not in text


def _verified(harness: Harness, version: str) -> None:
    """The device serves ``version`` and the slot it serves from verifies (digest + signature)."""
    assert harness.agent is not None
    loaded = harness.agent.registry.get("demo")
    assert loaded is not None and loaded.version == version
    rec = harness.agent.store.model("demo")
    assert rec.active is not None
    data = harness.agent.store.slot_path("demo", rec.active).read_bytes()
    assert bundle.open_bundle(data, [harness.key.public_key()], loaded.digest).manifest["model"]["version"] == version


async def _push(store: oci.OciStore, tb: onnx_models.TestBundle) -> str:
    stored = await store.put(tb.data, {"tag": f"{tb.version}-x86", core_oci.ANNOTATION_REVISION: f"demo-{tb.version}"})
    return stored.uri


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


async def test_agent_installs_from_the_registry_by_digest(
    harness: Harness, store: oci.OciStore, agent_artifacts: config.ArtifactsConfig, caplog: pytest.LogCaptureFixture
) -> None:
    tb = onnx_models.make_bundle(harness.key, "demo", "1.0.0")
    uri = await _push(store, tb)
    await store.close()
    assert uri.startswith(f"oci://{store.host}/{store.prefix}/demo@sha256:")
    async with harness.running(artifact_config=agent_artifacts):
        harness.want(desired(tb, uri))
        await eventually(lambda: harness.model_status().get("state") == "Active")
        _verified(harness, "1.0.0")
        assert harness.model_status()["download"] == {"source": f"https://{store.host}", "failures": []}
    assert_no_credentials(caplog.text, harness.status_file.read_text())


Case = tuple[str, str]
CASES: list[Case] = [
    ("wrong-digest", "VerificationFailed: digest mismatch"),
    ("wrong-signature", "VerificationFailed: signature by key"),
    ("truncated-blob", "Truncated: "),
]


@pytest.mark.parametrize(("case", "message"), CASES, ids=[c[0] for c in CASES])
async def test_bad_registry_artifact_is_rejected_and_the_device_keeps_its_verified_model(
    harness: Harness,
    store: oci.OciStore,
    origin: registry.Registry,
    agent_artifacts: config.ArtifactsConfig,
    caplog: pytest.LogCaptureFixture,
    case: str,
    message: str,
) -> None:
    good = onnx_models.make_bundle(harness.key, "demo", "1.0.0")
    good_uri = await _push(store, good)
    candidate = onnx_models.make_bundle(harness.key, "demo", "2.0.0")
    if case == "wrong-digest":
        # The spec pins another bundle's digest than the artifact the reference names.
        uri = await _push(store, candidate)
        other = onnx_models.make_bundle(harness.key, "demo", "3.0.0")
        spec = desired(dataclasses.replace(candidate, digest=other.digest), uri, size=len(candidate.data))
    elif case == "wrong-signature":
        forged = onnx_models.make_bundle(bundle.generate_key(), "demo", "2.0.0")
        uri = await _push(store, forged)
        spec = desired(forged, uri)
    else:
        # Blobs are shared by digest across the registry: a model of this test's own, so no other test sees the cut.
        candidate = onnx_models.make_bundle(harness.key, "demo", "2.0.0", pad_bytes=4099)
        uri = await _push(store, candidate)
        model_blob = core_oci.sha256(bundle.members(candidate.data)[bundle.MODEL])
        path = origin.blob_file(model_blob)
        path.write_bytes(path.read_bytes()[:-100])  # the registry now serves a short blob
        spec = desired(candidate, uri)
    await store.close()
    async with harness.running(artifact_config=agent_artifacts) as agent:
        harness.want(desired(good, good_uri))
        await eventually(lambda: harness.served_version() == "1.0.0")
        harness.want(spec)
        await eventually(lambda: harness.model_status().get("state") == "Failed")
        status = harness.model_status()
        assert status["message"].startswith(message), status["message"]
        assert status["activeDigest"] == good.digest
        _verified(harness, "1.0.0")
        assert agent.store.model("demo").rejected == {spec.artifact.digest: "Failed"}
    assert list((harness.root / "state" / "downloads").iterdir()) == []
    assert_no_credentials(caplog.text, harness.status_file.read_text())


async def test_registry_down_then_back_the_device_keeps_serving_and_then_installs(
    harness: Harness,
    store: oci.OciStore,
    origin: registry.Registry,
    agent_artifacts: config.ArtifactsConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = onnx_models.make_bundle(harness.key, "demo", "1.0.0")
    good_uri = await _push(store, good)
    candidate = onnx_models.make_bundle(harness.key, "demo", "2.0.0")
    uri = await _push(store, candidate)
    await store.close()
    async with harness.running(artifact_config=agent_artifacts):
        harness.want(desired(good, good_uri))
        await eventually(lambda: harness.served_version() == "1.0.0")
        origin.stop()
        try:
            harness.want(desired(candidate, uri))
            await eventually(lambda: "retry in" in (harness.model_status().get("message") or ""))
            status = harness.model_status()
            assert status["state"] == "Downloading" and status["activeDigest"] == good.digest
            assert f"https://{origin.host}/v2/" in status["message"] and "ClientConnectorError" in status["message"]
            _verified(harness, "1.0.0")
        finally:
            origin.start()
        await eventually(lambda: harness.served_version() == "2.0.0", timeout=30)
        _verified(harness, "2.0.0")
    assert_no_credentials(caplog.text, harness.status_file.read_text(), origin.log.read_text())


async def test_mirror_down_falls_back_to_the_origin(
    harness: Harness,
    store: oci.OciStore,
    agent_artifacts: config.ArtifactsConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from edgefleet.testing import controlplane

    tb = onnx_models.make_bundle(harness.key, "demo", "1.0.0")
    uri = await _push(store, tb)
    await store.close()
    down = f"https://127.0.0.1:{controlplane.free_port()}"  # nothing listens there
    mirrored = agent_artifacts.model_copy(update={"mirrors": [config.MirrorConfig(url=down)]})
    async with harness.running(artifact_config=mirrored):
        harness.want(desired(tb, uri))
        await eventually(lambda: harness.model_status().get("state") == "Active")
        _verified(harness, "1.0.0")
        report = harness.model_status()["download"]
        assert report["source"] == f"https://{store.host}"
        assert len(report["failures"]) == 1 and report["failures"][0].startswith(f"{down}: TransientError: ")
    assert_no_credentials(caplog.text, harness.status_file.read_text())


async def test_mirror_serving_corrupt_bytes_falls_back_to_the_origin(
    tmp_path: Path,
    harness: Harness,
    token_origin: registry.Registry,
    tls: registry.Certificates,
    agent_artifacts: config.ArtifactsConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    origin = token_origin  # distribution 2.8's proxy logs in to an origin only with tokens
    creds = oci.credentials_from_docker_config(origin.docker_config(), "test")
    store = oci.OciStore(f"{origin.host}/corrupt-{registry.stamp()}", credentials=creds, ca_file=tls.ca_file)
    tb = onnx_models.make_bundle(harness.key, "demo", "1.0.0", pad_bytes=8191)  # blobs of its own: one cache rots
    uri = await _push(store, tb)
    await store.close()
    (tmp_path / "auth.json").write_text(json.dumps(origin.docker_config()))
    agent_artifacts = agent_artifacts.model_copy(update={"credentials_file": tmp_path / "auth.json"})
    model_blob = core_oci.sha256(bundle.members(tb.data)[bundle.MODEL])
    with registry.running(tmp_path / "site-cache", tls, proxy_of=origin) as cache:
        mirrored = agent_artifacts.model_copy(update={"mirrors": [config.MirrorConfig(url=cache.url)]})
        # A first device fills the cache through it; then the cache's copy of the model blob rots on disk.
        (tmp_path / "first").mkdir()
        first = Harness(tmp_path / "first", harness.key, harness.artifacts)
        async with first.running(artifact_config=mirrored):
            first.want(desired(tb, uri))
            await eventually(lambda: first.model_status().get("state") == "Active")
            assert first.model_status()["download"] == {"source": cache.url, "failures": []}
        stored = cache.blob_file(model_blob)
        await eventually(lambda: stored.exists())
        rotten = bytearray(stored.read_bytes())
        rotten[len(rotten) // 2] ^= 0xFF
        stored.write_bytes(bytes(rotten))
        async with harness.running(artifact_config=mirrored):
            harness.want(desired(tb, uri))
            await eventually(lambda: harness.model_status().get("state") == "Active")
            _verified(harness, "1.0.0")
            report = harness.model_status()["download"]
        assert report["source"] == f"https://{store.host}"
        (failure,) = report["failures"]
        layer = f"layer model.onnx from {cache.url} does not match the digest its manifest names"
        assert failure == f"{cache.url}: IntegrityError: {layer}"
    assert_no_credentials(caplog.text, harness.status_file.read_text(), json.dumps(report))
