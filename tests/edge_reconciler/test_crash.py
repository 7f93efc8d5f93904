"""Power cuts at every install step: a real ``edgefleet-agent`` process SIGKILLs itself at a named step
(``EDGEFLEET_AGENT_CRASH_AT``); after a restart the device serves a verified model and converges again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle
from edgefleet.api.modeldeployment import HealthSpec
from edgefleet.edge_reconciler import faults
from edgefleet.testing import onnx_models
from edgefleet.testing.agent_harness import desired, eventually, spec_json
from edgefleet.testing.artifact_server import ArtifactServer

SRC = Path(__file__).resolve().parents[2] / "src"
pytestmark = pytest.mark.chaos


class Device:
    """An ``edgefleet-agent`` subprocess in file mode, serving on a UNIX socket."""

    def __init__(self, root: Path, key: ed25519.Ed25519PrivateKey) -> None:
        self.root = root
        self.socket = root / "agent.sock"
        self.desired = root / "desired.json"
        self.status_file = root / "status.json"
        (root / "trust.pem").write_bytes(bundle.public_key_pem(key.public_key()))
        self.config = root / "agent.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "deviceName": "crash-test",
                    "stateDir": str(root / "state"),
                    "trustKeys": [str(root / "trust.pem")],
                    "api": {"mode": "file", "desiredFile": str(self.desired), "statusFile": str(self.status_file)},
                    "server": {"unixSocket": str(self.socket)},
                    "retryInitialSeconds": 0.1,
                    "retryMaxSeconds": 0.5,
                    "statusIntervalSeconds": 0.5,
                    "healthTickSeconds": 0.02,
                }
            )
        )
        self.desired.write_text(spec_json([]))
        self.log = root / "agent.log"

    def start(self, crash_at: str | None = None, skip: int = 0) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PYTHONPATH=str(SRC))
        env.pop(faults.ENV, None)
        if crash_at:
            env |= {faults.ENV: crash_at, faults.SKIP_ENV: str(skip)}
        with open(self.log, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "edgefleet.edge_reconciler.main", "--config", str(self.config)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def model(self) -> dict[str, Any]:
        try:
            status = json.loads(self.status_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return next((m for m in status.get("models", []) if m["name"] == "demo"), {})

    @asynccontextmanager
    async def client(self) -> AsyncIterator[aiohttp.ClientSession]:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(self.socket))) as http:
            yield http


async def _predict(http: aiohttp.ClientSession, x: np.ndarray[Any, Any]) -> tuple[int, dict[str, Any]]:
    try:
        async with http.post("http://edge/v1/models/demo:predict", json={"inputs": {"x": x.tolist()}}) as r:
            return r.status, await r.json()
    except aiohttp.ClientError:
        return 0, {}


async def _ready(dev: Device, timeout: float = 20.0) -> None:
    """Wait for /readyz of a freshly started agent (a stale socket file refuses connections until then)."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with dev.client() as http:
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with http.get("http://edge/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("agent did not become ready")


async def _wait_exit(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    await eventually(lambda: proc.poll() is not None, timeout=timeout)
    assert proc.returncode is not None
    return proc.returncode


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _assert_verified(root: Path, key: ed25519.Ed25519PrivateKey, digest: str) -> None:
    """The journal's active slot holds exactly the bundle ``digest``, and it verifies."""
    journal = json.loads((root / "state" / "journal.json").read_text())
    record = journal["models"]["demo"]
    slot = record["active"]
    assert record["slots"][slot]["digest"] == digest
    data = (root / "state" / "slots" / "demo" / f"{slot}.bundle").read_bytes()
    bundle.open_bundle(data, [key.public_key()], digest)


@pytest.mark.parametrize("step", ["download", "verify", "install", "switch"])
async def test_crash_during_update_ends_on_verified_model(
    tmp_path: Path, signing_key: ed25519.Ed25519PrivateKey, artifacts: ArtifactServer, step: str
) -> None:
    v1 = onnx_models.make_bundle(signing_key, "demo", "1.0.0", pad_bytes=256 * 1024)
    v2 = onnx_models.make_bundle(signing_key, "demo", "2.0.0", pad_bytes=256 * 1024)
    url1 = artifacts.publish(v1.filename, v1.data)
    url2 = artifacts.publish(v2.filename, v2.data, chunk_delay=0.02)
    dev = Device(tmp_path, signing_key)
    x = np.random.default_rng(5).uniform(0.1, 1.0, size=(1, 4)).astype(np.float32)
    health = HealthSpec(window_seconds=1, min_samples=1, latency_p95_ms=1000)

    # The first install passes the step once; the second (1.0.0 -> 2.0.0) is cut there.
    proc = dev.start(crash_at=step, skip=1)
    try:
        dev.desired.write_text(spec_json([desired(v1, url1, health=health)]))
        await eventually(lambda: dev.model().get("activeDigest") == v1.digest and dev.model()["state"] == "Active")
        dev.desired.write_text(spec_json([desired(v2, url2, health=health)]))
        assert await _wait_exit(proc) == -signal.SIGKILL
    finally:
        _stop(proc)
    journal = json.loads((tmp_path / "state" / "journal.json").read_text())
    active_digest = journal["models"]["demo"]["slots"][journal["models"]["demo"]["active"]]["digest"]
    assert active_digest == (v2.digest if step == "switch" else v1.digest)
    _assert_verified(tmp_path, signing_key, active_digest)

    proc = dev.start()
    try:
        async with dev.client() as http:
            # Right after the restart the device answers with a verified version (old or new), never an error.
            status, body = 0, {}
            for _ in range(500):
                status, body = await _predict(http, x)
                if status == 200:
                    break
                await asyncio.sleep(0.02)
            assert status == 200 and body["model"]["digest"] in (v1.digest, v2.digest)
            await eventually(lambda: dev.model().get("activeDigest") == v2.digest and dev.model()["state"] == "Active")
            status, body = await _predict(http, x)
            assert status == 200 and body["model"]["version"] == "2.0.0"
            np.testing.assert_allclose(body["outputs"]["y"], onnx_models.reference(x, "2.0.0"), rtol=1e-5)
    finally:
        _stop(proc)
    assert proc.returncode == 0
    _assert_verified(tmp_path, signing_key, v2.digest)
    assert not list((tmp_path / "state" / "downloads").iterdir())
    assert not [p for p in (tmp_path / "state").rglob("*.tmp")]
    if step == "download":  # the second process resumed the partial download instead of starting over
        v2_requests = [r for r in artifacts.requests if r.path.endswith(v2.filename)]
        assert any((r.headers.get("Range") or "bytes=0-") != "bytes=0-" for r in v2_requests[1:]), v2_requests


async def test_crash_during_rollback_ends_on_previous_model(
    tmp_path: Path, signing_key: ed25519.Ed25519PrivateKey, artifacts: ArtifactServer
) -> None:
    good = onnx_models.make_bundle(signing_key, "demo", "1.0.0")
    bad = onnx_models.make_bundle(signing_key, "demo", "2.0.0", "nan")
    url_good, url_bad = artifacts.publish(good.filename, good.data), artifacts.publish(bad.filename, bad.data)
    dev = Device(tmp_path, signing_key)
    health = HealthSpec(window_seconds=30, min_samples=5, latency_p95_ms=1000)
    negative = np.array([[-1.0, 0.5, 0.5, 0.5]], dtype=np.float32)

    proc = dev.start(crash_at="rollback")
    try:
        dev.desired.write_text(spec_json([desired(good, url_good, health=health)]))
        await eventually(lambda: dev.model().get("activeDigest") == good.digest)
        dev.desired.write_text(spec_json([desired(bad, url_bad, health=health)]))
        await eventually(lambda: dev.model().get("activeDigest") == bad.digest)
        async with dev.client() as http:
            for _ in range(50):
                if proc.poll() is not None:
                    break
                await _predict(http, negative)
        assert await _wait_exit(proc) == -signal.SIGKILL
    finally:
        _stop(proc)
    _assert_verified(tmp_path, signing_key, good.digest)

    proc = dev.start()
    try:
        await eventually(
            lambda: dev.model().get("state") == "RolledBack" and dev.model()["activeDigest"] == good.digest
        )
        async with dev.client() as http:
            status, body = await _predict(http, negative)
        assert status == 200 and body["model"]["version"] == "1.0.0"
        assert "NonFiniteOutput" in dev.model()["message"]
    finally:
        _stop(proc)
    assert len([r for r in artifacts.requests if r.path.endswith(bad.filename)]) == 1


async def test_crash_loop_on_probation_rolls_back(
    tmp_path: Path, signing_key: ed25519.Ed25519PrivateKey, artifacts: ArtifactServer
) -> None:
    """A version that keeps taking the agent down (here: kill -9 from outside, as an OOM kill or a native crash
    would) is rolled back on the third unclean start of its probation, before it is loaded again."""
    good = onnx_models.make_bundle(signing_key, "demo", "1.0.0")
    bad = onnx_models.make_bundle(signing_key, "demo", "2.0.0")
    url_good, url_bad = artifacts.publish(good.filename, good.data), artifacts.publish(bad.filename, bad.data)
    dev = Device(tmp_path, signing_key)
    health = HealthSpec(window_seconds=300, min_samples=5, latency_p95_ms=1000)
    proc = dev.start()
    try:
        dev.desired.write_text(spec_json([desired(good, url_good, health=health)]))
        await eventually(lambda: dev.model().get("activeDigest") == good.digest)
        dev.desired.write_text(spec_json([desired(bad, url_bad, health=health)]))
        await eventually(lambda: dev.model().get("activeDigest") == bad.digest)
        for restart in range(3):
            proc.kill()
            proc.wait(10)
            if restart < 2:
                proc = dev.start()
                await _ready(dev)  # recovered: this start was counted, and 2.0.0 is loaded again
                async with dev.client() as http:
                    _, body = await _predict(http, np.ones((1, 4), np.float32))
                assert body["model"]["version"] == "2.0.0"
        proc = dev.start()
        await eventually(lambda: dev.model().get("state") == "RolledBack")
        assert dev.model()["activeDigest"] == good.digest
        assert "WorkerCrashes" in dev.model()["message"]
    finally:
        _stop(proc)
    journal = json.loads((tmp_path / "state" / "journal.json").read_text())
    assert journal["models"]["demo"]["rejected"] == {bad.digest: "RolledBack"}
