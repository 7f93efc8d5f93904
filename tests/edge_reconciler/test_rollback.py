"""Bad versions are rolled back by the device on its own, with the reason in status, and never reinstalled until
the desired digest changes; the good version keeps serving throughout (every request is counted)."""

from __future__ import annotations

import asyncio

import pytest

from edgefleet.testing import onnx_models
from edgefleet.testing.agent_harness import LATENCY_HEALTH, TEST_HEALTH, Harness, Traffic, desired, eventually


@pytest.mark.parametrize(
    ("variant", "code"),
    [("slow", "LatencyP95"), ("nan", "NonFiniteOutput")],
)
async def test_unhealthy_version_is_rolled_back(harness: Harness, variant: onnx_models.Variant, code: str) -> None:
    good, good_url = harness.publish("demo", "1.0.0")
    bad, bad_url = harness.publish("demo", "2.0.0", variant)
    async with harness.running() as agent:
        harness.want(desired(good, good_url))
        await eventually(lambda: harness.served_version() == "1.0.0")
        traffic = Traffic(harness).start()
        harness.want(desired(bad, bad_url, health=LATENCY_HEALTH if variant == "slow" else TEST_HEALTH))
        await eventually(lambda: harness.model_status().get("state") == "RolledBack")
        await asyncio.sleep(0.3)
        await traffic.stop()

        ms = harness.model_status()
        assert ms["activeVersion"] == "1.0.0" and ms["activeDigest"] == good.digest
        assert ms["desiredDigest"] == bad.digest
        assert code in ms["message"]
        assert harness.served_version() == "1.0.0"
        assert traffic.failed == []
        assert traffic.versions.get("1.0.0", 0) > 0 and traffic.versions.get("2.0.0", 0) > 0
        assert [r.code for r in agent.rollbacks] == [code]
        stalled = next(c for c in harness.status()["conditions"] if c["type"] == "Stalled")
        assert stalled["status"] == "True"

        # Not reinstalled while the desired digest stays the same (even across a restart of reconciling)...
        agent.wake.set()
        await asyncio.sleep(0.5)
        fetched = [r for r in harness.artifacts.requests if r.path.endswith(bad.filename)]
        assert len(fetched) == 1
        assert harness.served_version() == "1.0.0"

        # ...and a new digest is installed again.
        fixed, fixed_url = harness.publish("demo", "2.0.1")
        harness.want(desired(fixed, fixed_url))
        await eventually(lambda: harness.model_status().get("activeDigest") == fixed.digest)
        assert harness.model_status()["state"] == "Active"


async def test_failing_golden_samples_never_switch(harness: Harness) -> None:
    good, good_url = harness.publish("demo", "1.0.0")
    bad, bad_url = harness.publish("demo", "2.0.0", "bad-golden")
    async with harness.running() as agent:
        harness.want(desired(good, good_url))
        await eventually(lambda: harness.served_version() == "1.0.0")
        traffic = Traffic(harness).start()
        harness.want(desired(bad, bad_url))
        await eventually(lambda: harness.model_status().get("state") == "Failed")
        await traffic.stop()
        ms = harness.model_status()
        assert ms["message"].startswith("SmokeTestFailed: golden sample 0: output 'y' is outside")
        assert ms["activeDigest"] == good.digest
        assert traffic.failed == [] and set(traffic.versions) == {"1.0.0"}
        assert agent.store.model("demo").rejected == {bad.digest: "Failed"}


async def test_rollback_survives_restart(harness: Harness) -> None:
    """After a rollback the device restarts on the good version and still refuses the rolled-back digest."""
    good, good_url = harness.publish("demo", "1.0.0")
    bad, bad_url = harness.publish("demo", "2.0.0", "nan")
    harness.want(desired(good, good_url))
    async with harness.running():
        await eventually(lambda: harness.served_version() == "1.0.0")
        harness.want(desired(bad, bad_url))
        await eventually(lambda: harness.served_version() == "2.0.0")
        traffic = Traffic(harness).start()
        await eventually(lambda: harness.model_status().get("state") == "RolledBack")
        await traffic.stop()
    async with harness.running() as agent:
        await eventually(lambda: harness.served_version() == "1.0.0")
        await eventually(lambda: harness.model_status().get("state") == "RolledBack")
        await asyncio.sleep(0.3)
        assert harness.served_version() == "1.0.0"
        assert len([r for r in harness.artifacts.requests if r.path.endswith(bad.filename)]) == 1
        assert agent.store.model("demo").rejected[bad.digest] == "RolledBack"
