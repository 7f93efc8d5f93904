"""A simulated fleet of real edge agents (two worker processes) on the real API server with the real operator.

Sixty devices register with labels spread over sites, lines and hardware classes, then the operator rolls
``adder`` 1.0.0 out to all of them: every device downloads the signed bundle from the operator's store, verifies
and smoke-tests it, serves it to a synthetic load and reports Healthy. The test checks the resulting EdgeDevices,
Leases and ModelDeployment, the simulator's request counts, and that stopping the fleet leaves no process and no
state behind; once with a watch per device, once with one shared watch per worker process (the KubeEdge topology).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edgefleet.testing import controlplane, fleetstack
from edgefleet.testing.fleetsim import fleet, layout
from edgefleet.testing.processes import alive

pytestmark = pytest.mark.controlplane
DEVICES = 60
HEALTH = {"latencyP95Ms": 500.0, "maxErrorRate": 0.05, "minSamples": 2, "windowSeconds": 5}
STEPS = [{"setWeight": 50}, {"setWeight": 100}]


@pytest.mark.parametrize("watch", layout.WATCH_MODES)
def test_simulated_fleet_registers_converges_and_stops_cleanly(
    control_plane: controlplane.ControlPlane, namespace: str, tmp_path: Path, watch: str
) -> None:
    cp = control_plane
    with fleetstack.running(cp, namespace, tmp_path) as stack:
        spec = layout.FleetSpec(
            kubeconfig=str(cp.kubeconfig),
            namespace=namespace,
            devices=DEVICES,
            processes=2,
            root=str(tmp_path / "fleet"),
            trust_keys=(str(stack.trust_key),),
            load_rps=2.0,
            watch=watch,
        )
        sim = fleet.Fleet(spec).start()
        pids = sim.pids
        try:
            sim.wait(lambda s: s.registered == DEVICES, 60, "every device registered")
            devices = json.loads(cp.kubectl("-n", namespace, "get", "edgedevices", "-o", "json").stdout)["items"]
            assert len(devices) == DEVICES
            lines = {d["metadata"]["labels"]["edgefleet.io/line"] for d in devices}
            hardware = {d["metadata"]["labels"]["edgefleet.io/hardware-class"] for d in devices}
            assert len(lines) == layout.SITES * layout.LINES_PER_SITE and hardware == {"x86", "arm64"}

            stack.apply(stack.deployment("1.0.0", STEPS, HEALTH))
            deadline = time.monotonic() + 90
            status = stack.md_status()
            while time.monotonic() < deadline and status.get("phase") != "Healthy":
                sim.check()
                time.sleep(0.5)
                status = stack.md_status()
            assert status.get("phase") == "Healthy", status
            stable = status["stableRevision"]
            snap = sim.wait(lambda s: s.count("1.0.0") == DEVICES, 30, "every device Healthy on 1.0.0")

            devices = json.loads(cp.kubectl("-n", namespace, "get", "edgedevices", "-o", "json").stdout)["items"]
            reports = [d["status"]["models"][0] for d in devices]
            assert {r["activeRevision"] for r in reports} == {stable}
            assert {r["activeVersion"] for r in reports} == {"1.0.0"}
            assert all(r["state"] == "Active" and r["health"]["verdict"] == "Healthy" for r in reports), reports[:3]
            assert all(r["health"]["samples"] >= HEALTH["minSamples"] for r in reports)
            leases = json.loads(cp.kubectl("-n", namespace, "get", "leases", "-o", "json").stdout)["items"]
            assert {lease["metadata"]["name"] for lease in leases} >= {d["metadata"]["name"] for d in devices}
            assert (status.get("devices") or {}).get("updated") == DEVICES, status
            # Every device wrote through the counted client; it watched its own EdgeDevice, or its process's hub did.
            assert snap.writes >= 3 * DEVICES, snap.requests
            if watch == "device":
                assert snap.requests.get("WATCH", 0) >= DEVICES, snap.requests
            else:
                assert 2 <= snap.requests.get("WATCH", 0) < DEVICES / 4, snap.requests
                shards = {d["metadata"]["labels"][layout.SHARD_LABEL] for d in devices}
                assert len(shards) == 2, shards
            assert snap.rss_bytes > 0
        finally:
            sim.stop()
    assert not any(alive(pid) for pid in pids)
    assert not Path(spec.root).exists()


def test_the_offline_share_loses_power_at_once_and_the_rollout_completes_without_it(
    control_plane: controlplane.ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """``FleetSpec.offline`` puts the last devices in a worker of their own that ``power_off_offline`` SIGKILLs: the
    operator counts them unreachable once their Leases expire and a rollout completes on the others."""
    cp = control_plane
    n, off = 30, 3
    with fleetstack.running(cp, namespace, tmp_path) as stack:
        spec = layout.FleetSpec(
            kubeconfig=str(cp.kubeconfig),
            namespace=namespace,
            devices=n,
            processes=1,
            root=str(tmp_path / "fleet"),
            trust_keys=(str(stack.trust_key),),
            load_rps=2.0,
            watch="hub",
            offline=off,
            lease_duration_seconds=6,
        )
        with fleet.Fleet(spec).start() as sim:
            sim.wait(lambda s: s.registered == n, 60, "every device registered")
            stack.apply(stack.deployment("1.0.0", STEPS, HEALTH))
            sim.wait(lambda s: s.count("1.0.0") == n, 120, "every device Healthy on 1.0.0")
            sim.power_off_offline()
            lost = {layout.device_name(spec, i) for i in range(n - off, n)}
            deadline = time.monotonic() + 60
            status = stack.md_status()
            while time.monotonic() < deadline and (status.get("reachability") or {}).get("unreachable") != off:
                sim.check()  # the powered-off worker does not count as a crash
                time.sleep(0.5)
                status = stack.md_status()
            listed = {d["name"] for d in (status.get("reachability") or {}).get("devices") or []}
            assert listed == lost, status.get("reachability")
            stack.apply(stack.deployment("2.0.0", STEPS, HEALTH))
            sim.wait(lambda s: s.count("2.0.0") == n - off, 120, "every reachable device Healthy on 2.0.0")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not str(stack.md_status().get("stableRevision")).startswith("2.0.0"):
                time.sleep(0.5)
            status = stack.md_status()
            assert status["phase"] == "Healthy" and str(status["stableRevision"]).startswith("2.0.0"), status
            assert not status.get("abortedRevision")
