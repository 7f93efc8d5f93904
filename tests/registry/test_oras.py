"""Interoperability with the real ``oras`` CLI: what the operator's registry store pushes is an ordinary OCI artifact
``oras`` pulls, and the agent installs a bundle whose members ``oras`` pushed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle, oci
from edgefleet.core import oci as core_oci
from edgefleet.edge_reconciler import config
from edgefleet.testing import onnx_models, oras, registry
from edgefleet.testing.agent_harness import Harness, desired, eventually

pytestmark = pytest.mark.slow


async def test_oras_pulls_what_the_registry_store_pushed(
    tmp_path: Path, store: oci.OciStore, origin: registry.Registry, signing_key: ed25519.Ed25519PrivateKey
) -> None:
    tb = onnx_models.make_bundle(signing_key, "demo", "1.0.0")
    notes = {"tag": "1.0.0-abc-x86", core_oci.ANNOTATION_REVISION: "1.0.0-abc", "precision": "fp32"}
    stored = await store.put(tb.data, notes)
    await store.close()
    ref = stored.uri.removeprefix("oci://")
    out = tmp_path / "pulled"
    out.mkdir()
    oras.run(origin, "pull", ref, "-o", str(out), cwd=tmp_path)
    members = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(members) == ["manifest.json", "model.onnx", "signature.json"]
    repacked = bundle.pack(members)
    assert bundle.sha256_digest(repacked) == tb.digest
    assert bundle.open_bundle(repacked, [signing_key.public_key()], tb.digest).manifest["model"]["version"] == "1.0.0"

    manifest = json.loads(oras.run(origin, "manifest", "fetch", ref, cwd=tmp_path).stdout)
    assert manifest["artifactType"] == core_oci.ARTIFACT_TYPE
    assert manifest["annotations"] == {
        core_oci.ANNOTATION_NAME: "demo",
        core_oci.ANNOTATION_VERSION: "1.0.0",
        core_oci.ANNOTATION_REVISION: "1.0.0-abc",
        core_oci.ANNOTATION_BUNDLE: tb.digest,
    }
    assert {layer["annotations"][core_oci.TITLE]: layer["mediaType"] for layer in manifest["layers"]} == {
        "manifest.json": "application/vnd.edgefleet.bundle.manifest.v1+json",
        "model.onnx": core_oci.WEIGHT_MEDIA_TYPE,
        "signature.json": "application/vnd.edgefleet.bundle.signature.v1+json",
    }
    model_config = json.loads(oras.run(origin, "manifest", "fetch-config", ref, cwd=tmp_path).stdout)
    assert model_config["descriptor"] == {"name": "demo", "version": "1.0.0", "revision": "1.0.0-abc"}
    assert model_config["config"] == {"format": "onnx", "precision": "fp32"}
    assert model_config["modelfs"]["diffIds"] == [layer["digest"] for layer in manifest["layers"]]
    # The human-readable tag names the same manifest.
    tagged = oras.run(origin, "resolve", f"{store.host}/{store.prefix}/demo:1.0.0-abc-x86", cwd=tmp_path)
    assert tagged.stdout.strip() == core_oci.Reference.parse(stored.uri).digest


async def test_agent_installs_a_bundle_oras_pushed(
    tmp_path: Path,
    harness: Harness,
    repository: str,
    origin: registry.Registry,
    agent_artifacts: config.ArtifactsConfig,
) -> None:
    tb = onnx_models.make_bundle(harness.key, "demo", "1.0.0")
    files = tmp_path / "files"
    files.mkdir()
    for name, data in bundle.members(tb.data).items():
        (files / name).write_bytes(data)
    target = f"{repository}/demo:by-oras"
    pushed = oras.run(
        origin,
        "push",
        target,
        "--artifact-type",
        core_oci.ARTIFACT_TYPE,
        f"model.onnx:{core_oci.WEIGHT_MEDIA_TYPE}",
        "manifest.json",
        "signature.json",
        "--format",
        "json",
        cwd=files,
    )
    digest = json.loads(pushed.stdout)["digest"]
    uri = f"oci://{repository}/demo@{digest}"
    async with harness.running(artifact_config=agent_artifacts):
        harness.want(desired(tb, uri))
        await eventually(lambda: harness.model_status().get("state") == "Active")
        assert harness.served_version() == "1.0.0"
        assert harness.model_status()["activeDigest"] == tb.digest
        assert harness.model_status()["download"]["source"] == origin.url
