"""The real operator process with real edge agents (``edgefleet-agent`` processes) on the real API server.

Six agents register their EdgeDevices, download the signed bundles the operator compiled with the optimising
compiler from its artifact store, verify and smoke-test them, serve them on UNIX sockets and judge their health on
live traffic that this test sends. A good version goes canary -> 100 %; a version whose health thresholds cannot be
met is rolled back by the agents themselves and then aborted by the operator, every device returning to stable.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgefleet.adapters import bundle
from edgefleet.testing import controlplane, models, operatorproc
from edgefleet.testing.adder import agent_config, events, manifest, md_status, wait_for
from edgefleet.testing.operatorproc import OperatorProcess

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
AGENTS = 6
HEALTH = {"latencyP95Ms": 500.0, "maxErrorRate": 0.05, "minSamples": 10, "windowSeconds": 2}
STEPS = [{"setWeight": 50}, {"analysis": {"durationSeconds": 2, "minSamples": 20}}, {"setWeight": 100}]


class Traffic:
    """Inference requests to every agent's local API, as the machines on a line would send them."""

    def __init__(self, sockets: list[Path]) -> None:
        self.sockets = sockets
        self.stop = threading.Event()
        self.answered = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _one(self, socket: Path) -> None:
        connector = aiohttp.UnixConnector(path=str(socket))
        async with aiohttp.ClientSession(connector=connector) as http:
            while not self.stop.is_set():
                try:
                    body = {"inputs": {"x": [[0.5, 1.0, -1.0, 2.0]]}}
                    async with http.post("http://edge/v1/models/adder:predict", json=body) as response:
                        if response.status == 200:
                            self.answered += 1
                except (aiohttp.ClientError, OSError):
                    pass
                await asyncio.sleep(0.03)

    async def _run(self) -> None:
        await asyncio.gather(*(self._one(s) for s in self.sockets))


@pytest.fixture
def real_fleet(
    control_plane: controlplane.ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[tuple[controlplane.ControlPlane, str, str, Path, list[Path]]]:
    cp = control_plane
    store_dir = tmp_path / "models"
    store_dir.mkdir()
    for version, offset in (("1.0.0", 1.0), ("2.0.0", 2.0), ("3.0.0", 3.0)):
        (store_dir / f"{version}.onnx").write_bytes(models.adder(offset))
    (store_dir / "eval.npz").write_bytes(models.evaluation_set(4))
    key = bundle.generate_key()
    (tmp_path / "trust.pem").write_bytes(bundle.public_key_pem(key.public_key()))
    operatorproc.create_signing_secret(cp, namespace, key)
    pythonpath = os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")])
    agents: list[subprocess.Popen[bytes]] = []
    with models.served(store_dir) as url:
        env = operatorproc.operator_env(cp, namespace, tmp_path / "store", controlplane.free_port())
        operator = OperatorProcess(env, namespace, tmp_path / "operator.log")
        operator.start()
        sockets = []
        try:
            for i in range(AGENTS):
                name = f"agent-{i}"
                config = agent_config(tmp_path, name, namespace, cp.kubeconfig, line=i % 3)
                with (tmp_path / f"{name}.log").open("ab") as log:
                    agents.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "edgefleet.edge_reconciler.main", "--config", str(config)],
                            env={**os.environ, "PYTHONPATH": pythonpath},
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
                sockets.append(tmp_path / f"{name}.sock")
            yield cp, namespace, url, tmp_path, sockets
        finally:
            controlplane.stop_all(agents, grace=5)
            operator.stop()


def spec_with(namespace: str, url: str, version: str, root: Path, health: dict[str, Any]) -> str:
    body = json.loads(manifest(namespace, url, version, root / "models", STEPS))
    body["spec"]["health"] = health
    body["spec"]["rollout"]["maxUnavailable"] = "50%"
    return json.dumps(body)


def agent_reports(cp: controlplane.ControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    out = json.loads(cp.kubectl("-n", namespace, "get", "edgedevices", "-o", "json").stdout)
    return {d["metadata"]["name"]: ((d.get("status") or {}).get("models") or [{}])[0] for d in out["items"]}


def test_real_agents_canary_to_full_then_roll_back_a_bad_version(
    real_fleet: tuple[controlplane.ControlPlane, str, str, Path, list[Path]],
) -> None:
    cp, namespace, url, tmp, sockets = real_fleet
    log = tmp / "operator.log"
    probe = functools.partial(md_status, cp, namespace)
    wait_for(
        "agents registered",
        lambda: {"n": len(json.loads(cp.kubectl("-n", namespace, "get", "ed", "-o", "json").stdout)["items"])},
        lambda s: s["n"] == AGENTS,
        90,
        log,
    )
    traffic = Traffic(sockets)
    traffic.thread.start()
    try:
        cp.kubectl("apply", "-f", "-", input=spec_with(namespace, url, "1.0.0", tmp, HEALTH))
        v1 = wait_for("1.0.0 on every agent", probe, lambda s: s.get("phase") == "Healthy", 180, log)
        assert {r.get("activeRevision") for r in agent_reports(cp, namespace).values()} == {v1["stableRevision"]}

        cp.kubectl("apply", "-f", "-", input=spec_with(namespace, url, "2.0.0", tmp, HEALTH))
        trail: list[tuple[Any, ...]] = []
        v2 = wait_for(
            "2.0.0 promoted on real agents",
            probe,
            lambda s: s.get("phase") == "Healthy" and (s.get("stableRevision") or "").startswith("2.0.0"),
            180,
            log,
            trail,
        )
        assert any(u == 3 for _, step, u in trail if step is not None), trail  # the 50 % canary: one per line
        reports = agent_reports(cp, namespace)
        assert {r.get("activeRevision") for r in reports.values()} == {v2["stableRevision"]}
        assert all(r["health"]["verdict"] == "Healthy" for r in reports.values()), reports

        # 3.0.0 asks for a p95 latency no device can meet: the canaries roll back on their own, the operator aborts.
        strict = {**HEALTH, "latencyP95Ms": 0.0001}
        cp.kubectl("apply", "-f", "-", input=spec_with(namespace, url, "3.0.0", tmp, strict))
        failed = wait_for("3.0.0 rolled back", probe, lambda s: s.get("phase") == "RolledBack", 180, log)
        ready = next(c for c in failed["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "RolledBack" and "above latencyP95Ms" in ready["message"], ready
        wait_for(
            "every agent back on 2.0.0",
            lambda: {"active": sorted({str(r.get("activeRevision")) for r in agent_reports(cp, namespace).values()})},
            lambda s: s["active"] == [v2["stableRevision"]],
            90,
            log,
        )
        assert "RolloutAborted" in events(cp, namespace)
        assert traffic.answered > 100
    finally:
        traffic.stop.set()
        traffic.thread.join(timeout=10)
