"""Simulated devices with inference servers (``FleetSpec.sockets_dir``), on the real API server.

Six devices in two worker processes register with the plants' labels; each EdgeDevice is then asked for a signed
``demo`` 1.0.0 bundle (the spec the operator would write). Every device downloads, verifies and smoke-tests its own
copy, then answers predictions on its own UNIX socket through the agent's inference server with real onnxruntime.
Stopping the fleet closes the servers and removes the sockets.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from edgefleet.adapters import bundle
from edgefleet.testing import artifact_server, controlplane, onnx_models
from edgefleet.testing.agent_harness import desired
from edgefleet.testing.fleetsim import fleet, layout
from edgefleet.testing.processes import alive

pytestmark = pytest.mark.controlplane
DEVICES = 6


async def _ask(socket: Path, x: np.ndarray[Any, Any]) -> dict[str, Any]:
    """One prediction and the model list from the server on ``socket``."""
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket))) as http:
        async with http.post("http://edge/v1/models/demo:predict", json={"inputs": {"x": x.tolist()}}) as response:
            answer = {"status": response.status, "version": response.headers.get("X-Edgefleet-Model-Version")}
            answer["body"] = await response.json()
        async with http.get("http://edge/v1/models") as response:
            answer["models"] = (await response.json())["models"]
        async with http.get("http://edge/readyz") as response:
            answer["ready"] = response.status
    return answer


async def _ask_all(sockets: list[Path], x: np.ndarray[Any, Any], timeout: float) -> list[dict[str, Any]]:
    """Ask every socket until each one answers 200 (the device installed its model)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        answers = await asyncio.gather(*(_ask(s, x) for s in sockets), return_exceptions=True)
        done = [a for a in answers if isinstance(a, dict) and a["status"] == 200]
        if len(done) == len(sockets) or asyncio.get_running_loop().time() > deadline:
            return done
        await asyncio.sleep(0.2)


def test_simulated_devices_serve_predictions_on_their_own_sockets(
    control_plane: controlplane.ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    key = bundle.generate_key()
    trust = tmp_path / "trust.pem"
    trust.write_bytes(bundle.public_key_pem(key.public_key()))
    tb = onnx_models.make_bundle(key, "demo", "1.0.0")
    # UNIX socket paths are limited to 107 bytes, which pytest's tmp_path can exceed.
    sockets_dir = Path(tempfile.mkdtemp(prefix="edgefleet-sockets-"))
    try:
        with artifact_server.running() as artifacts:
            url = artifacts.publish(tb.filename, tb.data)
            spec = layout.FleetSpec(
                kubeconfig=str(cp.kubeconfig),
                namespace=namespace,
                devices=DEVICES,
                processes=2,
                root=str(tmp_path / "fleet"),
                trust_keys=(str(trust),),
                app="digit-reader",
                retry_initial_seconds=0.2,
                status_interval_seconds=1.0,
                sockets_dir=str(sockets_dir),
                label_layout="plants",
            )
            sockets = [path for i in range(DEVICES) if (path := layout.socket_path(spec, i)) is not None]
            sim = fleet.Fleet(spec).start()
            pids = sim.pids
            try:
                sim.wait(lambda s: s.registered == DEVICES, 60, "every device registered")
                assert sorted(sockets_dir.iterdir()) == sorted(sockets)
                devices = json.loads(cp.kubectl("-n", namespace, "get", "edgedevices", "-o", "json").stdout)["items"]
                labels = {d["metadata"]["name"]: d["metadata"]["labels"] for d in devices}
                assert labels == {layout.device_name(spec, i): layout.labels(spec, i) for i in range(DEVICES)}
                assert {v["edgefleet.io/site"] for v in labels.values()} == set(layout.PLANTS)

                entry = json.dumps({"spec": {"models": [desired(tb, url).to_wire()]}})
                for name in labels:
                    cp.kubectl("-n", namespace, "patch", "edgedevice", name, "--type=merge", "-p", entry)
                x = onnx_models.golden_inputs(1, seed=3)[0]
                answers = asyncio.run(_ask_all(sockets, x, timeout=40))
                sim.check()
                # Each device verified and installed its own copy in its own state directory.
                for name in labels:
                    slots = Path(spec.root) / "devices" / name / "slots" / "demo"
                    assert [bundle.sha256_digest(f.read_bytes()) for f in slots.iterdir()] == [tb.digest], name
            finally:
                sim.stop()
        assert len(answers) == DEVICES, answers
        for answer in answers:
            assert answer["version"] == "1.0.0" and answer["ready"] == 200
            np.testing.assert_allclose(answer["body"]["outputs"]["y"], onnx_models.reference(x), rtol=1e-5)
            assert [m["digest"] for m in answer["models"]] == [tb.digest]
        downloads = [r for r in artifacts.requests if r.method == "GET" and r.path.endswith(tb.filename)]
        assert len(downloads) >= DEVICES
        assert not any(alive(pid) for pid in pids)
        assert list(sockets_dir.iterdir()) == []
        assert not Path(spec.root).exists()
    finally:
        shutil.rmtree(sockets_dir, ignore_errors=True)
