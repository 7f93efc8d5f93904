"""Faults injected into live rollouts on one fleet: the real operator, five real ``edgefleet-agent`` processes (one
with a 4 MiB tmpfs as its state directory), the real kube-apiserver, live inference traffic.

Each test rolls out the next model version and, while it runs, kills the operator with SIGKILL, restarts the API
server, cuts devices off the network, corrupts the bundle on the store, fills a device's disk, or slows downloads to
a crawl; then checks the shared invariants of :mod:`edgefleet.testing.chaos.invariants`. The tests share the fleet
and run in file order (each starts from the previous one's terminal state).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from edgefleet.testing import controlplane
from edgefleet.testing.chaos import invariants
from edgefleet.testing.chaos.fleet import Fleet, Traffic, running

pytestmark = [pytest.mark.chaos, pytest.mark.controlplane]
AGENTS = 5
MAX_UNAVAILABLE = "40%"
SMALL_DISK = "agent-4"
STEPS: list[dict[str, Any]] = [{"setWeight": 40}, {"pause": {"durationSeconds": 3}}, {"setWeight": 100}]


@pytest.fixture(scope="module")
def fleet(control_plane: controlplane.ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    namespace = f"chaos-{os.getpid()}-{int(time.time()) % 100000}"
    control_plane.kubectl("create", "namespace", namespace)
    root = tmp_path_factory.mktemp("chaos")
    with running(control_plane, namespace, root, AGENTS, tmpfs={SMALL_DISK: "4m"}) as f:
        f.wait(
            "agents registered",
            lambda s: s["n"] == AGENTS,
            90,
            lambda: {"n": len(invariants.edge_devices(control_plane, namespace))},
        )
        f.apply("1.0.0", STEPS)
        f.wait("1.0.0 on every device", lambda s: s.get("phase") == "Healthy", 180)
        f.traffic = Traffic(f.sockets)
        f.traffic.thread.start()
        yield f


def check_invariants(fleet: Fleet, sampler: invariants.AvailabilitySampler, status: dict[str, Any]) -> None:
    """The invariants, after a rollout reached its terminal condition."""
    assert fleet.traffic is not None
    now = fleet.traffic.snapshot()
    invariants.every_device_kept_answering(fleet.answered, now, fleet.traffic.failed)
    fleet.answered = now
    invariants.every_device_serves_a_verified_model(fleet.sockets, fleet.trust_key, fleet.artifacts())
    deadline = time.monotonic() + 60
    while True:  # devices asked back to stable may still be switching; they must get there
        try:
            invariants.no_device_off_the_allowed_revisions(fleet.cp, fleet.namespace, fleet.status())
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    sampler.check(invariants.max_unavailable(MAX_UNAVAILABLE, AGENTS))
    invariants.no_status_lost(fleet.cp, fleet.namespace, fleet.sockets)


def rollout(fleet: Fleet, version: str, **kwargs: Any) -> str:
    """Apply ``version`` and return its revision once the operator compiled it and started the rollout (or
    already aborted it: a fault can end a rollout within a second)."""
    fleet.apply(version, STEPS, max_unavailable=MAX_UNAVAILABLE, **kwargs)

    def started(s: dict[str, Any]) -> bool:
        return any((s.get(k) or "").startswith(version + "-") for k in ("canaryRevision", "abortedRevision"))

    status = fleet.wait(f"{version} canary", started, 120)
    return str(status.get("canaryRevision") or status["abortedRevision"])


def test_operator_killed_mid_rollout_continues_from_status(fleet: Fleet) -> None:
    with invariants.AvailabilitySampler(fleet.cp, fleet.namespace) as sampler:
        canary = rollout(fleet, "2.0.0")
        fleet.wait("step 1 reached", lambda s: (s.get("currentStepIndex") or 0) >= 1, 60)
        before = {r: fleet.event_count(r, canary) for r in ("RolloutStarted", "StepCompleted")}
        compiled = fleet.event_count("Compiled", canary)
        assert fleet.operator is not None and fleet.operator.proc is not None
        os.killpg(fleet.operator.proc.pid, signal.SIGKILL)
        fleet.operator.proc.wait()
        invariants.fault("operator-sigkill")
        fleet.operator.start()
        status = invariants.reaches_a_terminal_condition(fleet.status, 120, why=fleet.log_tail)
    assert status["phase"] == "Healthy" and status["stableRevision"] == canary, status
    # Finished steps were not redone, nothing was recompiled: the new process continued from status.
    assert fleet.event_count("RolloutStarted", canary) == before["RolloutStarted"] == 1
    assert fleet.event_count("StepCompleted", canary) == len(STEPS)
    assert before["StepCompleted"] >= 1
    assert fleet.event_count("Compiled", canary) == compiled == 1
    check_invariants(fleet, sampler, status)


def test_api_server_restarted_mid_rollout(fleet: Fleet) -> None:
    with invariants.AvailabilitySampler(fleet.cp, fleet.namespace) as sampler:
        canary = rollout(fleet, "3.0.0")
        fleet.cp.restart_apiserver()
        invariants.fault("apiserver-restart")
        status = invariants.reaches_a_terminal_condition(fleet.status, 150, why=fleet.log_tail)
    assert status["phase"] == "Healthy" and status["stableRevision"] == canary, status
    assert fleet.operator is not None and fleet.operator.proc is not None and fleet.operator.proc.poll() is None
    assert fleet.event_count("Promoted", canary) == 1
    check_invariants(fleet, sampler, status)


def test_devices_cut_off_keep_serving_and_report_after_reconnecting(fleet: Fleet) -> None:
    assert fleet.traffic is not None
    cut = ["agent-0", "agent-3"]
    with invariants.AvailabilitySampler(fleet.cp, fleet.namespace) as sampler:
        canary = rollout(fleet, "4.0.0")
        for device in cut:
            fleet.cut_off(device)
            invariants.fault("device-cut-off")
        answered = fleet.traffic.snapshot()
        time.sleep(5)
        served_offline = fleet.traffic.snapshot()
        for device in cut:
            fleet.reconnect(device)
        status = invariants.reaches_a_terminal_condition(fleet.status, 150, why=fleet.log_tail)
    for device in cut:  # offline, each device went on answering inference requests
        assert served_offline[device] > answered[device] + 10, (device, answered, served_offline)
    assert status["phase"] == "Healthy" and status["stableRevision"] == canary, status
    assert fleet.api_proxies["agent-0"].connections >= 2  # the agent really came back through the proxy
    check_invariants(fleet, sampler, status)


def test_corrupt_artifact_is_rejected_and_not_promoted(fleet: Fleet) -> None:
    assert fleet.store_proxy is not None
    stable = fleet.status()["stableRevision"]
    known = set(fleet.artifacts())
    fleet.store_proxy.held = True  # downloads wait until the stored bundle is corrupted
    try:
        with invariants.AvailabilitySampler(fleet.cp, fleet.namespace) as sampler:
            canary = rollout(fleet, "5.0.0")
            new = [d for d in fleet.artifacts() if d not in known]
            assert len(new) == 1, new
            path = fleet.store_dir / "sha256" / new[0].removeprefix("sha256:")
            data = bytearray(path.read_bytes())
            for i in range(len(data) // 2, len(data) // 2 + 8):
                data[i] ^= 0xFF
            path.chmod(0o644)
            path.write_bytes(bytes(data))
            invariants.fault("artifact-corrupted")
            fleet.store_proxy.held = False
            status = invariants.reaches_a_terminal_condition(fleet.status, 150, why=fleet.log_tail)
    finally:
        fleet.store_proxy.held = False
    assert status["stableRevision"] == stable and status["phase"] == "RolledBack", status
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["message"], ready
    assert "VerificationFailed: digest mismatch" in ready["message"], ready  # the condition says why
    # The devices said why in their status: seen by the sampler, or quoted from it by the operator (an abort can
    # come within a second, between two samples).
    assert all("digest mismatch" in m for m in sampler.failed.values()), sampler.failed
    assert sampler.failed or re.search(r"agent-\d \(VerificationFailed: digest mismatch", ready["message"]), ready
    assert not any(e for e in fleet.events() if e.get("reason") == "Promoted" and canary in e.get("message", ""))
    check_invariants(fleet, sampler, status)


def test_full_disk_fails_the_install_cleanly(fleet: Fleet) -> None:
    stable = fleet.status()["stableRevision"]
    state = fleet.root / SMALL_DISK
    if state not in fleet.mounts:
        pytest.skip(f"could not mount a tmpfs as {SMALL_DISK}'s state directory (needs root, as CI has)")
    filler = state / "filler"
    with pytest.raises(OSError), filler.open("wb") as handle:  # until ENOSPC
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    invariants.fault("disk-full")
    try:
        with invariants.AvailabilitySampler(fleet.cp, fleet.namespace) as sampler:
            rollout(fleet, "6.0.0")
            status = invariants.reaches_a_terminal_condition(fleet.status, 150, why=fleet.log_tail)
        assert status["stableRevision"] == stable and status["phase"] == "RolledBack", status
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert SMALL_DISK in ready["message"] and "space" in ready["message"].lower(), ready
        said = sampler.failed.get(SMALL_DISK) or ready["message"].split(f"{SMALL_DISK} (", 1)[-1]
        assert said.startswith("StorageError") and "No space left on device" in said, (said, ready)
        served = invariants.served({SMALL_DISK: fleet.sockets[SMALL_DISK]})[SMALL_DISK]
        assert served["revision"] == stable, served  # it kept serving its verified model
        assert fleet.agents[SMALL_DISK].poll() is None, "the agent survived a full disk"
        check_invariants(fleet, sampler, status)
    finally:
        filler.unlink()


def test_slow_downloads_end_in_a_terminal_condition(fleet: Fleet) -> None:
    assert fleet.store_proxy is not None
    size = max(p.stat().st_size for p in (fleet.store_dir / "sha256").iterdir())
    fleet.store_proxy.rate = max(64.0, size / 30)  # a ~30 s download against a 10 s progress deadline
    try:
        with invariants.AvailabilitySampler(fleet.cp, fleet.namespace) as sampler:
            rollout(fleet, "7.0.0", progress_deadline=10)
            invariants.fault("slow-downloads")
            status = invariants.reaches_a_terminal_condition(fleet.status, 120, why=fleet.log_tail)
    finally:
        fleet.store_proxy.rate = None
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    if status["phase"] != "Healthy":  # the progress deadline ended it, and the condition names who was too slow
        assert status["phase"] == "RolledBack" and "no progress for 10s" in ready["message"], ready
        assert "not converged: agent-" in ready["message"], ready
    check_invariants(fleet, sampler, status)
