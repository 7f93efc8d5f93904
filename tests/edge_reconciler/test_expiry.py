"""Desired state expires: a device never begins an install (nor switches to one) from a desired entry past its
``validity.expiresAt``, keeps serving its active model and says why; a refreshed entry installs. Real agent, real
store on disk, real downloads from a real HTTP server (behind a closable proxy), real onnxruntime."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np

from edgefleet.testing import tcpproxy
from edgefleet.testing.agent_harness import FAST, Harness, OfflineControl, desired, eventually, valid_for
from edgefleet.testing.chaos.fleet import ThrottlingProxy


def ready(harness: Harness) -> dict[str, str]:
    return next((c for c in harness.status().get("conditions", []) if c["type"] == "Ready"), {})


async def test_an_expired_entry_is_not_installed_and_the_active_model_keeps_serving(harness: Harness) -> None:
    v1, url1 = harness.publish("demo", "1.0.0")
    v2, url2 = harness.publish("demo", "2.0.0")
    x = np.random.default_rng(3).uniform(0.1, 1.0, size=(1, 4)).astype(np.float32)
    async with harness.running():
        harness.want(valid_for(desired(v1, url1), 3600))
        await eventually(lambda: harness.model_status().get("activeDigest") == v1.digest)
        before = len(harness.artifacts.requests)

        harness.want(valid_for(desired(v2, url2), -1))  # the operator stopped vouching for it a second ago
        await eventually(lambda: ready(harness).get("reason") == "DesiredStateExpired")
        status = harness.model_status()
        assert status["state"] == "Pending" and status["activeDigest"] == v1.digest
        assert status["desiredDigest"] == v2.digest
        assert status["message"].startswith("DesiredStateExpired: version 2.0.0 is not installed: its desired entry")
        assert "serving version 1.0.0 until the operator refreshes the entry" in status["message"]
        assert ready(harness)["status"] == "False"
        assert not any(c["type"] == "Reconciling" for c in harness.status()["conditions"]), "it is not installing"
        await asyncio.sleep(0.5)
        code, body = await harness.predict(x)
        assert code == 200 and body["model"]["version"] == "1.0.0"
        assert len(harness.artifacts.requests) == before, "nothing was downloaded"

        harness.want(valid_for(desired(v2, url2), 3600))  # refreshed: now it installs
        await eventually(lambda: harness.model_status().get("activeDigest") == v2.digest)
        assert ready(harness)["reason"] == "Converged"


async def test_a_restart_without_network_does_not_resume_an_install_whose_entry_expired(harness: Harness) -> None:
    """The device was downloading 2.0.0 when it lost power; 2.0.0 was aborted meanwhile (the operator stopped
    refreshing its entry), and the device boots with no API server, only its journal's cached spec: it keeps serving
    1.0.0 and never installs 2.0.0, although the artifact store answers again. With network back it converges to
    what the operator asks for then."""
    v1, url1 = harness.publish("demo", "1.0.0")
    v2, _ = harness.publish("demo", "2.0.0")
    store = tcpproxy.TcpProxy("127.0.0.1", harness.artifacts.port)
    url2 = f"http://127.0.0.1:{store.port}/{v2.filename}"
    async with harness.running():
        harness.want(valid_for(desired(v1, url1), 3600))
        await eventually(lambda: harness.model_status().get("activeDigest") == v1.digest)
        harness.want(valid_for(desired(v2, url2), 2))  # the store is unreachable: it keeps retrying the download
        await eventually(lambda: harness.model_status().get("state") == "Downloading")
    journal = harness.root / "state" / "journal.json"
    assert "2.0.0" in journal.read_text(), "the journal caches the spec it was downloading for"
    await asyncio.sleep(2.5)  # the entry expires while the device is off
    await store.up()
    try:
        offline = OfflineControl()
        served = len(harness.artifacts.requests)
        async with harness.running(dataclasses.replace(FAST, resync_seconds=0.2), ctl=offline) as agent:
            await eventually(lambda: harness.served_version() == "1.0.0")
            await asyncio.sleep(2.0)  # several reconcile passes
            assert harness.served_version() == "1.0.0"
            assert len(harness.artifacts.requests) == served, "it did not even start the download"
            assert offline.attempts > 0, "it really had no API server"
            said = agent.reporter.build_status()  # buffered until the API server is reachable again
            model = next(m for m in said.models if m.name == "demo")
            assert model.state == "Pending" and model.message is not None and "DesiredStateExpired" in model.message
            assert next(c for c in said.conditions if c.type == "Ready").reason == "DesiredStateExpired"
        # Network back: the operator's current entry for this device (its stable revision, here 1.0.0 again).
        async with harness.running():
            harness.want(valid_for(desired(v1, url1), 3600))
            await eventually(lambda: ready(harness).get("reason") == "Converged")
            assert harness.model_status()["activeDigest"] == v1.digest
            assert not any(r.path.endswith(v2.filename) for r in harness.artifacts.requests)
    finally:
        await store.down()


async def test_an_entry_that_expires_during_the_download_is_not_switched_to(harness: Harness) -> None:
    v1, url1 = harness.publish("demo", "1.0.0")
    v2, _ = harness.publish("demo", "2.0.0")
    link = ThrottlingProxy("127.0.0.1", harness.artifacts.port)
    link.rate = len(v2.data) / 2.0  # a two-second download
    await link.up()
    try:
        async with harness.running() as agent:
            harness.want(valid_for(desired(v1, url1), 3600))
            await eventually(lambda: harness.model_status().get("activeDigest") == v1.digest)
            url2 = f"http://127.0.0.1:{link.port}/{v2.filename}"
            harness.want(valid_for(desired(v2, url2), 1.0))  # valid when the install begins, expired when it ends
            await eventually(lambda: harness.model_status().get("state") == "Downloading")
            await eventually(lambda: ready(harness).get("reason") == "DesiredStateExpired", timeout=30)
            assert link.bytes >= len(v2.data), "the download had completed"
            active = agent.store.model("demo").active_slot
            assert harness.served_version() == "1.0.0" and active is not None and active.digest == v1.digest
    finally:
        await link.down()
