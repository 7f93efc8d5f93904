"""Downloads ahead of activation on a real agent: the staged version waits verified in the inactive slot, the switch
downloads nothing, and staged bytes of a revision the spec no longer names are dropped (real HTTP server)."""

from __future__ import annotations

import dataclasses

from edgefleet.api.edgedevice import DesiredModel, PrestagedArtifact
from edgefleet.testing import onnx_models
from edgefleet.testing.agent_harness import Harness, desired, eventually


def _ahead(entry: DesiredModel, later: DesiredModel, rate: int | None = None) -> DesiredModel:
    ahead = PrestagedArtifact(
        version=later.version, revision=later.revision, artifact=later.artifact, max_bytes_per_second=rate
    )
    return entry.model_copy(update={"prestage": ahead})


async def test_staged_version_activates_without_a_download(harness: Harness) -> None:
    v1, v1_url = harness.publish("demo", "1.0.0")
    v2, v2_url = harness.publish("demo", "2.0.0")
    first, second = desired(v1, v1_url), desired(v2, v2_url)
    async with harness.running() as agent:
        harness.want(first)
        await eventually(lambda: harness.served_version() == "1.0.0")
        harness.want(_ahead(first, second))
        await eventually(lambda: harness.model_status().get("stagedDigest") == v2.digest)
        status = harness.model_status()
        assert status["state"] == "Active" and status["activeDigest"] == v1.digest
        assert harness.served_version() == "1.0.0"
        assert "version 2.0.0 staged in slot b" in status["message"]
        assert agent.store.model("demo").staged is not None and "b" not in agent.store.model("demo").slots
        downloads = [r for r in harness.artifacts.requests if r.path.endswith(v2.filename)]
        assert len(downloads) == 1

        harness.want(second)
        await eventually(lambda: harness.model_status().get("activeDigest") == v2.digest)
        assert harness.served_version() == "2.0.0"
        assert [r for r in harness.artifacts.requests if r.path.endswith(v2.filename)] == downloads  # none more
        status = harness.model_status()
        assert status["activeDigest"] == v2.digest and "stagedDigest" not in status
        assert status["previousDigest"] == v1.digest  # the rollback target is still there
        assert agent.store.model("demo").staged is None


async def test_dropped_prestage_deletes_the_staged_bytes(harness: Harness) -> None:
    v1, v1_url = harness.publish("demo", "1.0.0")
    v2, v2_url = harness.publish("demo", "2.0.0")
    first = desired(v1, v1_url)
    async with harness.running() as agent:
        harness.want(_ahead(first, desired(v2, v2_url)))
        await eventually(lambda: harness.model_status().get("stagedDigest") == v2.digest)
        slot = harness.root / "state" / "slots" / "demo" / "b.bundle"
        assert slot.exists()
        harness.want(first)  # the canary was aborted: the operator no longer names it
        await eventually(lambda: "stagedDigest" not in harness.model_status())
        assert not slot.exists() and agent.store.model("demo").staged is None
        assert harness.served_version() == "1.0.0"


async def test_prestage_is_paced_and_an_install_resumes_it(harness: Harness) -> None:
    v1, v1_url = harness.publish("demo", "1.0.0")
    v2 = onnx_models.make_bundle(harness.key, "demo", "2.0.0", pad_bytes=256 * 1024)
    v2_url = harness.artifacts.publish(v2.filename, v2.data)
    first, second = desired(v1, v1_url), desired(v2, v2_url)
    async with harness.running():
        harness.want(first)
        await eventually(lambda: harness.served_version() == "1.0.0")
        harness.want(_ahead(first, second, rate=64 * 1024))  # ~4 s for the bundle at this pace
        part = harness.root / "state" / "downloads" / (v2.digest.split(":")[1] + ".part")
        await eventually(lambda: part.exists() and 0 < part.stat().st_size < len(v2.data) // 2)
        harness.want(second)  # the step switches the device before the download ahead finished
        await eventually(lambda: harness.served_version() == "2.0.0")
    ranges = [r.headers.get("Range") for r in harness.artifacts.requests if r.path.endswith(v2.filename)]
    assert ranges[0] is None and any(r is not None and r != "bytes=0-" for r in ranges[1:]), ranges


def test_prestaged_entry_round_trips_the_api() -> None:
    tb = onnx_models.TestBundle("demo", "1.0.0", "good", "sha256:" + "1" * 64, b"x")
    entry = _ahead(desired(tb, "http://s/a"), desired(dataclasses.replace(tb, version="2.0.0"), "http://s/b"), 10)
    assert DesiredModel.model_validate(entry.to_wire()) == entry
    assert entry.to_wire()["prestage"]["maxBytesPerSecond"] == 10
