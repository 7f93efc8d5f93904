"""A device converges to its desired models: install, replace with a second version, remove (file-driven spec,
real downloads, real onnxruntime, real HTTP serving)."""

from __future__ import annotations

import numpy as np

from edgefleet.testing import onnx_models
from edgefleet.testing.agent_harness import Harness, desired, eventually


async def test_converges_replaces_and_removes(harness: Harness) -> None:
    v1, url1 = harness.publish("demo", "1.0.0")
    v2, url2 = harness.publish("demo", "1.1.0")
    x = np.random.default_rng(1).uniform(0.1, 1.0, size=(3, 4)).astype(np.float32)
    async with harness.running() as agent:
        harness.want(desired(v1, url1))
        await eventually(lambda: harness.model_status().get("activeDigest") == v1.digest)
        status, body = await harness.predict(x)
        assert status == 200
        assert body["model"]["version"] == "1.0.0"
        np.testing.assert_allclose(body["outputs"]["y"], onnx_models.reference(x, "1.0.0"), rtol=1e-5)

        harness.want(desired(v2, url2))
        await eventually(lambda: harness.model_status().get("activeDigest") == v2.digest)
        status, body = await harness.predict(x)
        assert body["model"]["version"] == "1.1.0"
        np.testing.assert_allclose(body["outputs"]["y"], onnx_models.reference(x, "1.1.0"), rtol=1e-5)
        ms = harness.model_status()
        assert ms["state"] == "Active" and ms["previousDigest"] == v1.digest
        ready = next(c for c in harness.status()["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"

        harness.want()
        await eventually(lambda: harness.status().get("models") == [])
        status, _ = await harness.predict(x)
        assert status == 404
        assert agent.registry.all() == []
        assert not (harness.root / "state" / "slots" / "demo").exists()
        assert list((harness.root / "state" / "downloads").iterdir()) == []


async def test_two_models_side_by_side_and_one_removed(harness: Harness) -> None:
    a, url_a = harness.publish("demo", "1.0.0")
    b, url_b = harness.publish("other", "3.0.0")
    x = np.random.default_rng(2).uniform(0.1, 1.0, size=(1, 4)).astype(np.float32)
    async with harness.running() as agent:
        harness.want(desired(a, url_a), desired(b, url_b))
        await eventually(lambda: {m.name for m in agent.registry.all()} == {"demo", "other"})
        await eventually(lambda: harness.model_status("other").get("state") == "Active")
        _, body = await harness.predict(x, "other")
        np.testing.assert_allclose(body["outputs"]["y"], onnx_models.reference(x, "3.0.0"), rtol=1e-5)
        harness.want(desired(b, url_b))
        await eventually(lambda: [m["name"] for m in harness.status().get("models", [])] == ["other"])
        assert (await harness.predict(x, "demo"))[0] == 404
        assert (await harness.predict(x, "other"))[0] == 200
