"""One fleet for a chaos module: the real operator process, real ``edgefleet-agent`` processes, each reaching the
real kube-apiserver through its own closable TCP proxy, and the operator's artifact store behind a proxy that can
hold or throttle downloads. Live inference traffic goes to every agent while a test runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml

from edgefleet.adapters import bundle
from edgefleet.testing import controlplane, models, operatorproc
from edgefleet.testing.adder import agent_config, manifest, md_status
from edgefleet.testing.operatorproc import OperatorProcess
from edgefleet.testing.tcpproxy import TcpProxy

REPO = controlplane.REPO
VERSIONS = [f"{major}.0.0" for major in range(1, 10)]
T = TypeVar("T")


class ThrottlingProxy(TcpProxy):
    """A :class:`TcpProxy` whose traffic can be held (new connections and bytes on open ones wait until released)
    and whose bytes can be limited to ``rate`` bytes per second: a congested link in front of the artifact store."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        super().__init__(upstream_host, upstream_port)
        self.rate: float | None = None
        self.held = False
        self.bytes = 0

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        while self.held:
            await asyncio.sleep(0.05)
        await super()._handle(client_r, client_w)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(256 if self.rate else 65536):
                while self.held:  # a request on a kept-alive connection waits here, before the store reads a byte
                    await asyncio.sleep(0.05)
                self.bytes += len(data)
                writer.write(data)
                await writer.drain()
                if self.rate:
                    await asyncio.sleep(len(data) / self.rate)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


class Loop:
    """An asyncio loop in a daemon thread, for the proxies."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class Traffic:
    """Inference requests to every agent, counting answers and failures per device."""

    def __init__(self, sockets: dict[str, Path]) -> None:
        self.sockets = sockets
        self.stop = threading.Event()
        self.answered = dict.fromkeys(sockets, 0)
        self.failed = dict.fromkeys(sockets, 0)
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _one(self, name: str, socket: Path) -> None:
        connector = aiohttp.UnixConnector(path=str(socket))
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5)) as http:
            while not self.stop.is_set():
                try:
                    body = {"inputs": {"x": [[0.5, 1.0, -1.0, 2.0]]}}
                    async with http.post("http://edge/v1/models/adder:predict", json=body) as response:
                        if response.status == 200:
                            self.answered[name] += 1
                        else:
                            self.failed[name] += 1
                except (TimeoutError, aiohttp.ClientError, OSError):
                    self.failed[name] += 1
                await asyncio.sleep(0.1)

    async def _run(self) -> None:
        await asyncio.gather(*(self._one(n, s) for n, s in self.sockets.items()))

    def snapshot(self) -> dict[str, int]:
        return dict(self.answered)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


class Fleet:
    """Everything a chaos test acts on (built by :func:`running`)."""

    def __init__(self, cp: controlplane.ControlPlane, namespace: str, root: Path, url: str) -> None:
        self.cp, self.namespace, self.root, self.url = cp, namespace, root, url
        self.loop = Loop()
        self.key = bundle.generate_key()
        self.trust_key = self.key.public_key()
        self.operator: OperatorProcess | None = None
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.api_proxies: dict[str, TcpProxy] = {}
        self.sockets: dict[str, Path] = {}
        self.store_dir = root / "store"
        self.store_proxy: ThrottlingProxy | None = None
        self.traffic: Traffic | None = None
        self.answered: dict[str, int] = {}  # the traffic's answers per device when the invariants were last checked
        self.mounts: list[Path] = []

    # -- the deployment ------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return md_status(self.cp, self.namespace)

    def apply(
        self,
        version: str,
        steps: list[dict[str, Any]],
        *,
        max_unavailable: str = "40%",
        progress_deadline: int = 60,
        **rollout: Any,
    ) -> None:
        """Apply the ``adder`` ModelDeployment at ``version``; ``rollout`` adds fields to ``spec.rollout``."""
        body = json.loads(manifest(self.namespace, self.url, version, self.root / "models", steps))
        # A short health window: a device's probation (during which the next version waits) ends in seconds.
        body["spec"]["health"] = {"latencyP95Ms": 500.0, "maxErrorRate": 0.05, "minSamples": 10, "windowSeconds": 2}
        body["spec"]["rollout"]["maxUnavailable"] = max_unavailable
        body["spec"]["rollout"]["progressDeadlineSeconds"] = progress_deadline
        body["spec"]["rollout"].update(rollout)
        self.cp.kubectl("apply", "-f", "-", input=json.dumps(body))

    def artifacts(self) -> dict[str, str]:
        """Every bundle the operator's store holds: digest -> URI (through the store proxy, as devices fetch it)."""
        assert self.store_proxy is not None
        blobs = self.store_dir / "sha256"
        return {
            f"sha256:{p.name}": f"http://127.0.0.1:{self.store_proxy.port}/artifacts/sha256/{p.name}"
            for p in blobs.iterdir()
            if not p.name.startswith(".")
        }

    def wait(
        self,
        what: str,
        done: Callable[[dict[str, Any]], bool],
        timeout: float,
        probe: Callable[[], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = (probe or self.status)()
            if done(status):
                return status
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}: {json.dumps(status)[:2000]}\n{self.log_tail()}")

    def log_tail(self) -> str:
        log = self.root / "operator.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        out = self.cp.kubectl("-n", self.namespace, "get", "events", "-o", "json").stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    def event_count(self, reason: str, contains: str = "") -> int:
        return sum(
            int(e.get("count") or 1)
            for e in self.events()
            if e.get("reason") == reason and contains in (e.get("message") or "")
        )

    # -- faults --------------------------------------------------------------------------------------------------
    def cut_off(self, device: str) -> None:
        self.loop.run(self.api_proxies[device].down())

    def reconnect(self, device: str) -> None:
        self.loop.run(self.api_proxies[device].up())

    def power_off(self, device: str) -> None:
        """SIGKILL the agent's process group: a power cut (its state directory stays as the cut left it)."""
        proc = self.agents[device]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def power_on(self, device: str) -> None:
        """Start the agent again with its config and state directory (booting after a power cut)."""
        assert self.agents[device].poll() is not None, f"{device} is running"
        self.agents[device] = _start(self.root, device, *self.commands[device])


def _kubeconfig_through(cp: controlplane.ControlPlane, port: int, path: Path) -> Path:
    doc = yaml.safe_load(cp.kubeconfig.read_text())
    for cluster in doc["clusters"]:
        scheme, rest = cluster["cluster"]["server"].split("://", 1)
        host = rest.rsplit(":", 1)[0]
        cluster["cluster"]["server"] = f"{scheme}://{host}:{port}"
    path.write_text(yaml.safe_dump(doc))
    return path


def _upstream(cp: controlplane.ControlPlane) -> tuple[str, int]:
    server = yaml.safe_load(cp.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    host, port = server.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def _start(root: Path, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    with (root / f"{name}.log").open("ab") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@contextlib.contextmanager
def running(
    cp: controlplane.ControlPlane,
    namespace: str,
    root: Path,
    agents: int,
    tmpfs: dict[str, str] | None = None,
    agent_settings: dict[str, Any] | None = None,
    lines: int = 2,
) -> Iterator[Fleet]:
    """Start the fleet; ``tmpfs`` maps device names to the size of a tmpfs mounted as that device's state dir;
    ``agent_settings`` are written into every agent's config file (e.g. ``leaseDurationSeconds``); the agents are
    dealt round-robin over ``lines`` lines."""
    model_dir = root / "models"
    model_dir.mkdir()
    for i, version in enumerate(VERSIONS):
        (model_dir / f"{version}.onnx").write_bytes(models.adder(float(i + 1)))
    (model_dir / "eval.npz").write_bytes(models.evaluation_set(4))
    with models.served(model_dir) as url:
        fleet = Fleet(cp, namespace, root, url)
        (root / "trust.pem").write_bytes(bundle.public_key_pem(fleet.trust_key))
        operatorproc.create_signing_secret(cp, namespace, fleet.key)
        pythonpath = os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")])
        store_port = controlplane.free_port()
        fleet.store_proxy = ThrottlingProxy("127.0.0.1", store_port)
        fleet.loop.run(fleet.store_proxy.up())
        env = operatorproc.operator_env(
            cp, namespace, fleet.store_dir, store_port, store_url=f"http://127.0.0.1:{fleet.store_proxy.port}"
        )
        fleet.operator = OperatorProcess(env, namespace, root / "operator.log")
        fleet.operator.start()
        upstream = _upstream(cp)
        try:
            for i in range(agents):
                name = f"agent-{i}"
                proxy = TcpProxy(*upstream)
                fleet.loop.run(proxy.up())
                fleet.api_proxies[name] = proxy
                state = root / name
                state.mkdir()
                if tmpfs and name in tmpfs:
                    mounted = subprocess.run(
                        ["mount", "-t", "tmpfs", "-o", f"size={tmpfs[name]}", "tmpfs", str(state)],
                        capture_output=True,
                        check=False,
                    )
                    if mounted.returncode == 0:  # not root: the full-disk test skips, the others still run
                        fleet.mounts.append(state)
                kubeconfig = _kubeconfig_through(cp, proxy.port, root / f"{name}.kubeconfig")
                config = agent_config(root, name, namespace, kubeconfig, line=i % lines)
                if agent_settings:
                    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), **agent_settings}))
                command = [sys.executable, "-m", "edgefleet.edge_reconciler.main", "--config", str(config)]
                fleet.commands[name] = (command, {**os.environ, "PYTHONPATH": pythonpath})
                fleet.agents[name] = _start(root, name, *fleet.commands[name])
                fleet.sockets[name] = root / f"{name}.sock"
            yield fleet
        finally:
            if fleet.traffic is not None:
                fleet.traffic.close()
            controlplane.stop_all(fleet.agents.values(), grace=20)
            fleet.operator.stop()
            for proxy in [*fleet.api_proxies.values(), fleet.store_proxy]:
                with contextlib.suppress(Exception):
                    fleet.loop.run(proxy.down())
            fleet.loop.close()
            for mount in fleet.mounts:
                subprocess.run(["umount", "-l", str(mount)], check=False)
