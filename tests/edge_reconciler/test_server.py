"""The local inference server: JSON and binary predictions, model listing, probes, metrics, UNIX socket, and hot
swaps under concurrent load with zero failed requests (real aiohttp server, real onnxruntime)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import numpy as np

from edgefleet.adapters import bundle, inference_server, onnx_session
from edgefleet.api.modeldeployment import HealthSpec
from edgefleet.edge_reconciler import serving
from edgefleet.testing import onnx_models
from edgefleet.testing.agent_harness import Harness, Traffic, desired, eventually


def _loaded(version: str = "1.0.0", variant: onnx_models.Variant = "good") -> serving.Loaded:
    runtime = onnx_session.ModelRuntime(onnx_models.model_bytes(variant, version))
    return serving.Loaded("demo", version, "sha256:" + "ab" * 32, "r1", runtime, HealthSpec())


async def test_json_binary_listing_probes_and_metrics(tmp_path: Path) -> None:
    registry = serving.Registry()
    registry.swap(_loaded())
    registry.ready = True
    sock = tmp_path / "agent.sock"
    server = inference_server.Server(registry, unix_socket=sock)
    await server.start()
    x = np.random.default_rng(3).normal(size=(2, 4)).astype(np.float32)
    want = onnx_models.reference(x)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as http:
            base = "http://edge"
            async with http.post(f"{base}/v1/models/demo:predict", json={"inputs": {"x": x.tolist()}}) as r:
                assert r.status == 200
                body = await r.json()
                np.testing.assert_allclose(body["outputs"]["y"], want, rtol=1e-6)
                assert r.headers["X-Edgefleet-Model-Version"] == "1.0.0"
            encoded = {"inputs": {"x": bundle.encode_array(x)}}
            async with http.post(f"{base}/v1/models/demo:predict", json=encoded) as r:
                y = bundle.decode_array((await r.json())["outputs"]["y"])
                np.testing.assert_allclose(y, want, rtol=1e-6)
            headers = {"Content-Type": "application/octet-stream", "X-Edgefleet-Shape": "2,4"}
            async with http.post(f"{base}/v1/models/demo:predict", data=x.tobytes(), headers=headers) as r:
                assert r.status == 200 and r.headers["X-Edgefleet-Shape"] == "2,3"
                y = np.frombuffer(await r.read(), dtype="<f4").reshape(2, 3)
                np.testing.assert_allclose(y, want, rtol=1e-6)
            async with http.post(f"{base}/v1/models/demo:predict", data=x.tobytes()[:-4], headers=headers) as r:
                assert r.status == 400
            async with http.post(f"{base}/v1/models/nope:predict", json={"inputs": {"x": []}}) as r:
                assert r.status == 404
            async with http.post(f"{base}/v1/models/demo:predict", json={"inputs": {"x": [[1, 2]]}}) as r:
                assert r.status == 400 and (await r.json())["error"]["class"] != "OK"
            async with http.get(f"{base}/v1/models") as r:
                (model,) = (await r.json())["models"]
                assert model["name"] == "demo" and model["inputs"] == [
                    {"name": "x", "dtype": "float32", "shape": ["N", 4]}
                ]
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 200
            registry.ready = False
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 503
            async with http.get(f"{base}/metrics") as r:
                text = await r.text()
            assert 'edgefleet_inference_requests_total{model="demo",outcome="OK",version="1.0.0"} 3.0' in text
            assert 'edgefleet_inference_seconds_count{model="demo",version="1.0.0"} 3.0' in text
            for value in x.ravel().tolist() + want.ravel().tolist():
                assert repr(value) not in text and f"{value:.4f}" not in text
    finally:
        await server.stop()
        registry.shutdown()


async def test_hot_swap_under_concurrent_load_fails_no_request(harness: Harness) -> None:
    versions = ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]
    published = [harness.publish("demo", v) for v in versions]
    async with harness.running():
        harness.want(desired(*published[0]))
        await eventually(lambda: harness.served_version() == "1.0.0")
        traffic = Traffic(harness, clients=8, positive=True).start()
        for tb, url in published[1:]:
            await asyncio.sleep(0.2)
            harness.want(desired(tb, url, health=HealthSpec(window_seconds=1, min_samples=1, latency_p95_ms=1000)))
            await eventually(lambda tb=tb: harness.model_status().get("activeDigest") == tb.digest)
            await eventually(lambda: harness.agent is not None and not harness.agent.monitor.watched(), timeout=5)
        await asyncio.sleep(0.2)
        await traffic.stop()
    print(f"hot swap: {traffic.ok} requests, {len(traffic.failed)} failed, by version {traffic.versions}")
    assert traffic.failed == []
    assert set(traffic.versions) == set(versions)
    assert traffic.ok > 200
