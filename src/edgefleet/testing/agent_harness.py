"""An in-process edge agent for tests: real store on disk, real onnxruntime, real HTTP server on 127.0.0.1,
real artifact downloads; the desired spec comes from a file (or from a real API server in the control-plane tests)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import artifacts, inference_server, oci, protocols
from edgefleet.api.edgedevice import ArtifactRef, DesiredModel, DesiredValidity, EdgeDeviceSpec, EdgeDeviceStatus
from edgefleet.api.modeldeployment import HealthSpec
from edgefleet.core.errors import TransientError
from edgefleet.edge_reconciler import capabilities, config, control, device, serving, state
from edgefleet.edge_reconciler import main as agent_main
from edgefleet.testing import onnx_models
from edgefleet.testing.artifact_server import ArtifactServer

FAST = config.AgentSettings(
    retry_initial_seconds=0.1, retry_max_seconds=0.5, status_interval_seconds=0.5, health_tick_seconds=0.02
)
# Lenient on latency (a loaded CI machine must not roll a good version back); tests about latency set their own.
TEST_HEALTH = HealthSpec(latency_p95_ms=200.0, max_error_rate=0.0, min_samples=10, window_seconds=1)
# The "slow" test model takes ~12 ms per inference (one thread); the good one ~0.02 ms.
LATENCY_HEALTH = HealthSpec(latency_p95_ms=4.0, max_error_rate=0.0, min_samples=10, window_seconds=1)


def desired(
    tb: onnx_models.TestBundle, uri: str, *, health: HealthSpec = TEST_HEALTH, size: int | None = None
) -> DesiredModel:
    """The spec entry the operator would write for a published test bundle."""
    return DesiredModel(
        name=tb.name,
        deployment=tb.name,
        version=tb.version,
        revision=f"{tb.name}-{tb.version}",
        artifact=ArtifactRef(uri=uri, digest=tb.digest, size_bytes=size or len(tb.data), precision="fp32"),
        health=health,
    )


def valid_for(entry: DesiredModel, seconds: float) -> DesiredModel:
    """``entry`` as the operator stamps it: assigned now, valid for ``seconds`` (negative: already expired)."""
    now = dt.datetime.now(dt.UTC)
    validity = DesiredValidity(assigned_at=now, expires_at=now + dt.timedelta(seconds=seconds))
    return entry.model_copy(update={"validity": validity})


class OfflineControl:
    """A :class:`~edgefleet.adapters.protocols.DeviceControl` with no network: every call fails as an unreachable
    API server makes it fail, and no spec ever arrives (the agent acts on its journal's cached spec)."""

    def __init__(self) -> None:
        self.attempts = 0

    async def register(self, labels: Mapping[str, str]) -> None:
        self.attempts += 1
        raise TransientError("the API server is unreachable (no network)")

    async def heartbeat(self, now: dt.datetime) -> None:
        self.attempts += 1
        raise TransientError("the API server is unreachable (no network)")

    async def specs(self) -> AsyncIterator[tuple[EdgeDeviceSpec, int | None]]:
        await asyncio.Event().wait()  # nothing ever arrives
        yield EdgeDeviceSpec(), None  # pragma: no cover - unreachable

    async def report(self, status: EdgeDeviceStatus) -> None:
        self.attempts += 1
        raise TransientError("the API server is unreachable (no network)")


def spec_json(models: Sequence[DesiredModel]) -> str:
    return json.dumps({"models": [m.to_wire() for m in models]})


async def eventually(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


class Harness:
    """One device: agent + server, driven through a desired file or an injected Control."""

    def __init__(self, root: Path, key: ed25519.Ed25519PrivateKey, server: ArtifactServer) -> None:
        self.root = root
        self.key = key
        self.artifacts = server
        self.desired_file = root / "desired.json"
        self.status_file = root / "status.json"
        self.desired_file.write_text(spec_json([]))
        self.agent: device.Agent | None = None
        self.http: aiohttp.ClientSession | None = None
        self.port = 0

    def publish(self, name: str = "demo", version: str = "1.0.0", variant: onnx_models.Variant = "good") -> Any:
        tb = onnx_models.make_bundle(self.key, name, version, variant)
        return tb, self.artifacts.publish(tb.filename, tb.data)

    def want(self, *models: DesiredModel) -> None:
        self.desired_file.write_text(spec_json(models))

    def status(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.status_file.read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def model_status(self, name: str = "demo") -> dict[str, Any]:
        return next((m for m in self.status().get("models", []) if m["name"] == name), {})

    @contextlib.asynccontextmanager
    async def running(
        self,
        settings: config.AgentSettings = FAST,
        ctl: protocols.DeviceControl | None = None,
        *,
        artifact_config: config.ArtifactsConfig | None = None,
    ) -> AsyncIterator[device.Agent]:
        """The agent on this harness's state directory; ``artifact_config`` sets mirrors, registry CA and
        credentials as ``edgefleet-agent`` reads them from its config file."""
        store = state.Store(self.root / "state")
        registry = serving.Registry(workers=2)
        cfg = config.AgentConfig(device_name="harness", artifacts=artifact_config or config.ArtifactsConfig())
        downloads = artifacts.new_session(ssl_context=oci.ssl_context(cfg.artifacts.ca_file))
        fetch = agent_main.make_fetcher(cfg.model_copy(update={"download_timeout_seconds": 10.0}), downloads)
        agent = device.Agent(
            control=ctl or control.FileControl(self.desired_file, self.status_file, poll_seconds=0.02),
            store=store,
            registry=registry,
            fetch=fetch,
            trusted_keys=[self.key.public_key()],
            settings=settings,
            capabilities=capabilities.detect(),
        )
        server = inference_server.Server(registry, port=0)
        await server.start()
        self.port = server.port
        self.agent = agent
        self.http = aiohttp.ClientSession()
        task = asyncio.create_task(agent.run())
        try:
            yield agent
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.http.close()
            await server.stop()
            await downloads.close()
            registry.shutdown()

    async def predict(self, x: np.ndarray[Any, Any], name: str = "demo") -> tuple[int, dict[str, Any]]:
        assert self.http is not None
        url = f"http://127.0.0.1:{self.port}/v1/models/{name}:predict"
        async with self.http.post(url, json={"inputs": {"x": x.tolist()}}) as resp:
            return resp.status, await resp.json()

    def served_version(self, name: str = "demo") -> str | None:
        assert self.agent is not None
        loaded = self.agent.registry.get(name)
        return loaded.version if loaded else None


class Traffic:
    """Concurrent clients sending predictions until stopped; counts every outcome and which versions answered."""

    def __init__(self, harness: Harness, *, clients: int = 4, seed: int = 0, positive: bool = False) -> None:
        self.harness = harness
        self.clients = clients
        self.rng = np.random.default_rng(seed)
        self.positive = positive
        self.ok = 0
        self.failed: list[tuple[int, Any]] = []
        self.versions: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def sample(self) -> np.ndarray[Any, Any]:
        if self.positive:
            return self.rng.uniform(0.1, 1.0, size=(1, 4)).astype(np.float32)
        return self.rng.normal(size=(1, 4)).astype(np.float32)

    async def _client(self) -> None:
        while not self._stop.is_set():
            status, body = await self.harness.predict(self.sample())
            if status == 200:
                self.ok += 1
                version = body["model"]["version"]
                self.versions[version] = self.versions.get(version, 0) + 1
            else:
                self.failed.append((status, body))

    def start(self) -> Traffic:
        self._tasks = [asyncio.create_task(self._client()) for _ in range(self.clients)]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
