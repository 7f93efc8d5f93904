"""Fleets that are never all online: twenty real ``edgefleet-agent`` processes on the real API server, each behind its
own closable TCP proxy, the real operator, the operator's artifact store behind a proxy that can hold or slow
downloads.

* Two devices lose power (SIGKILL) before a rollout, a canary loses power while it downloads, and a device is cut off
  from the API server during the waves: the rollout completes on every reachable device without an abort, its status
  and ``kubectl get md`` name the unreachable ones, and once they are back they converge to the new stable revision.
* Half the fleet loses power: the rollout holds with a condition that says why, and resumes by itself once they return.
* A device is offline while the revision it was downloading is aborted, then restarts without network: it keeps
  serving its active model and never installs the aborted revision (its cached entry expired); with network back it
  converges to stable.

The agents renew a 6 s Lease (every 2 s) so that the operator notices an outage within seconds here; the defaults
are 300 s / 100 s (docs/rollouts.md explains the trade-off). The tests share the fleet and run in file order.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from edgefleet.testing import controlplane
from edgefleet.testing.chaos import invariants
from edgefleet.testing.chaos.fleet import Fleet, running

pytestmark = [pytest.mark.chaos, pytest.mark.controlplane, pytest.mark.slow]
AGENTS = 20
LEASE_SECONDS = 6
PICKUP_SECONDS = 10
MAX_UNAVAILABLE = "25%"
STEPS: list[dict[str, Any]] = [{"setWeight": 20}, {"pause": {"durationSeconds": 0}}, {"setWeight": 100}]
POLICY = {"pickupTimeoutSeconds": PICKUP_SECONDS, "maxUnreachable": "20%"}


@pytest.fixture(scope="module")
def fleet(control_plane: controlplane.ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    namespace = f"offline-{os.getpid()}-{int(time.time()) % 100000}"
    control_plane.kubectl("create", "namespace", namespace)
    root = tmp_path_factory.mktemp("offline")
    settings = {"leaseDurationSeconds": LEASE_SECONDS}
    with running(control_plane, namespace, root, AGENTS, agent_settings=settings, lines=4) as f:
        f.wait(
            "agents registered",
            lambda s: s["n"] == AGENTS,
            180,
            lambda: {"n": len(invariants.edge_devices(control_plane, namespace))},
        )
        f.apply("1.0.0", STEPS, max_unavailable="50%", progress_deadline=90, **POLICY)
        f.wait("1.0.0 on every device", lambda s: s.get("phase") == "Healthy", 240)
        yield f


def devices(fleet: Fleet) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in invariants.edge_devices(fleet.cp, fleet.namespace)}


def desired(device: dict[str, Any]) -> str | None:
    models = (device.get("spec") or {}).get("models") or [{}]
    return models[0].get("revision")


def report(device: dict[str, Any]) -> dict[str, Any]:
    models: list[dict[str, Any]] = (device.get("status") or {}).get("models") or [{}]
    return models[0]


def unreachable(status: dict[str, Any]) -> dict[str, str]:
    return {d["name"]: d["reason"] for d in (status.get("reachability") or {}).get("devices") or []}


def running_sockets(fleet: Fleet, offline: set[str]) -> dict[str, Any]:
    return {n: s for n, s in fleet.sockets.items() if n not in offline}


def journal(fleet: Fleet, device: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((fleet.root / device / "journal.json").read_text())
    return data


def test_rollout_completes_on_the_reachable_fleet_and_returning_devices_converge(fleet: Fleet) -> None:
    assert fleet.store_proxy is not None
    stable = fleet.status()["stableRevision"]
    dead = ["agent-5", "agent-14"]  # 10 % lose power before the rollout
    for name in dead:
        fleet.power_off(name)
        invariants.fault("power-cut-before-rollout")
    offline = set(dead)
    size = max(p.stat().st_size for p in (fleet.store_dir / "sha256").iterdir())
    fleet.store_proxy.held = True  # the canaries' downloads wait: one canary loses power in the middle of one
    with invariants.AvailabilitySampler(fleet.cp, fleet.namespace) as sampler:
        fleet.apply("2.0.0", STEPS, max_unavailable=MAX_UNAVAILABLE, progress_deadline=90, **POLICY)
        status = fleet.wait("2.0.0 canary", lambda s: str(s.get("canaryRevision", "")).startswith("2.0.0-"), 120)
        canary = status["canaryRevision"]

        def downloading() -> dict[str, Any]:
            found = [
                n
                for n, d in devices(fleet).items()
                if desired(d) == canary and report(d).get("state") == "Downloading" and n not in offline
            ]
            return {"devices": found}

        victim = fleet.wait("a canary downloading", lambda s: bool(s["devices"]), 60, downloading)["devices"][0]
        fleet.power_off(victim)
        invariants.fault("power-cut-while-downloading")
        offline.add(victim)
        fleet.store_proxy.rate = max(256.0, size / 4)  # about four seconds per download: the waves take a while
        fleet.store_proxy.held = False

        def waves(s: dict[str, Any]) -> bool:
            return s.get("currentStepIndex") == len(STEPS) - 1

        fleet.wait("the waves of the last step", waves, 120)
        # Cut off a device that has not been given the canary yet, while the waves go on.
        current = devices(fleet)
        cut = next(n for n in sorted(current) if n not in offline and desired(current[n]) == stable)
        fleet.cut_off(cut)
        invariants.fault("device-cut-off-during-waves")
        offline.add(cut)
        status = invariants.reaches_a_terminal_condition(fleet.status, 240, why=fleet.log_tail)
    fleet.store_proxy.rate = None
    assert status["phase"] == "Healthy" and status["stableRevision"] == canary, status
    assert not status.get("abortedRevision") and fleet.event_count("RolloutAborted") == 0
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "RolloutComplete" and "unreachable get it when they return" in ready["message"], ready
    assert set(unreachable(status)) == offline, (unreachable(status), offline)
    assert status["reachability"]["unreachable"] == len(offline) == 4
    assert status["reachability"]["reachable"] == AGENTS - 4
    printed = fleet.cp.kubectl("-n", fleet.namespace, "get", "md", "adder").stdout.splitlines()
    column = printed[0].index("UNREACHABLE")  # the printer column (cells of other columns may be empty)
    assert printed[1][column:].split()[0] == "4", printed
    now = devices(fleet)
    reachable = [n for n in now if n not in offline]
    assert all(report(now[n]).get("activeRevision") == canary for n in reachable), {
        n: report(now[n]).get("activeRevision") for n in reachable
    }
    assert all(s["revision"] == canary for s in invariants.served(running_sockets(fleet, offline)).values())
    invariants.every_device_serves_a_verified_model(running_sockets(fleet, offline), fleet.trust_key, fleet.artifacts())
    sampler.check(invariants.max_unavailable(MAX_UNAVAILABLE, AGENTS), offline=offline)

    # They come back: power restored, the link reconnected. Each converges to the new stable revision.
    for name in [*dead, victim]:
        fleet.power_on(name)
    fleet.reconnect(cut)

    def back(s: dict[str, Any]) -> bool:
        return s.get("phase") == "Healthy" and (s.get("reachability") or {}).get("unreachable") == 0

    status = fleet.wait("every device back", back, 180)
    fleet.wait(
        "every device on the new stable",
        lambda s: s["active"] == [canary],
        120,
        lambda: {"active": sorted({str(report(d).get("activeRevision")) for d in devices(fleet).values()})},
    )
    assert {s["revision"] for s in invariants.served(fleet.sockets).values()} == {canary}
    invariants.no_status_lost(fleet.cp, fleet.namespace, fleet.sockets)


def test_half_the_fleet_offline_holds_the_rollout_until_it_returns(fleet: Fleet) -> None:
    stable = fleet.status()["stableRevision"]
    dead = [f"agent-{i}" for i in range(0, AGENTS, 2)]  # 50 %
    for name in dead:
        fleet.power_off(name)
        invariants.fault("power-cut-half-the-fleet")
    fleet.wait(
        "the outage noticed",
        lambda s: (s.get("reachability") or {}).get("unreachable") == len(dead),
        60,
    )
    fleet.apply("3.0.0", STEPS, max_unavailable=MAX_UNAVAILABLE, progress_deadline=90, **POLICY)

    def held(s: dict[str, Any]) -> bool:
        ready = next((c for c in s.get("conditions") or [] if c["type"] == "Ready"), {})
        return ready.get("reason") == "TooManyUnreachable" and str(s.get("canaryRevision", "")).startswith("3.0.0-")

    status = fleet.wait("the rollout held", held, 120)
    canary = status["canaryRevision"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert status["phase"] == "Paused" and ready["status"] == "Unknown", status
    assert f"{len(dead)}/{AGENTS} targeted devices are unreachable" in ready["message"], ready
    assert "more than maxUnreachable 20% (4)" in ready["message"] and "resumes by itself" in ready["message"]
    reconciling = next(c for c in status["conditions"] if c["type"] == "Reconciling")
    assert reconciling["reason"] == "TooManyUnreachable"
    time.sleep(PICKUP_SECONDS + 2)  # held: nothing moves, nothing times out
    status = fleet.status()
    assert status["phase"] == "Paused" and not status.get("abortedRevision")
    assert not any(desired(d) == canary for d in devices(fleet).values()), "a held rollout gives nobody the canary"

    for name in dead:
        fleet.power_on(name)
    status = fleet.wait(
        "the rollout resumed by itself and completed",
        lambda s: s.get("phase") == "Healthy" and str(s.get("stableRevision", "")).startswith("3.0.0-"),
        300,
    )
    assert status["stableRevision"] == canary and status["stableRevision"] != stable
    assert fleet.event_count("RolloutAborted") == 0
    fleet.wait(
        "every device on the new stable",
        lambda s: s["active"] == [canary],
        120,
        lambda: {"active": sorted({str(report(d).get("activeRevision")) for d in devices(fleet).values()})},
    )


def test_offline_while_its_revision_is_aborted_then_restarted_without_network_never_installs_it(fleet: Fleet) -> None:
    assert fleet.store_proxy is not None
    stable = fleet.status()["stableRevision"]
    validity = 12
    fleet.store_proxy.held = True  # the canaries download slowly (held)
    try:
        fleet.apply(
            "4.0.0",
            [{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}],
            max_unavailable=MAX_UNAVAILABLE,
            progress_deadline=90,
            desiredValiditySeconds=validity,
            **POLICY,
        )
        status = fleet.wait("4.0.0 canary", lambda s: str(s.get("canaryRevision", "")).startswith("4.0.0-"), 120)
        aborted = status["canaryRevision"]

        def downloading() -> dict[str, Any]:
            found = [
                n
                for n, d in devices(fleet).items()
                if desired(d) == aborted and report(d).get("state") == "Downloading"
            ]
            return {"devices": sorted(found)}

        device = fleet.wait("a canary downloading", lambda s: bool(s["devices"]), 60, downloading)["devices"][0]
        entry = devices(fleet)[device]["spec"]["models"][0]
        assert entry["validity"]["expiresAt"] > entry["validity"]["assignedAt"]
        fleet.cut_off(device)
        invariants.fault("device-cut-off-while-downloading")
        fleet.cp.kubectl(
            "-n", fleet.namespace, "annotate", "md", "adder", f"edgefleet.io/abort={aborted}", "--overwrite"
        )
        fleet.wait(
            "4.0.0 aborted", lambda s: s.get("abortedRevision") == aborted and s.get("phase") == "RolledBack", 60
        )
        time.sleep(validity + 2)  # its cached entry expires while it is offline: nobody refreshes an aborted entry
        fleet.power_off(device)
        invariants.fault("power-cut-while-offline")
        fleet.store_proxy.held = False  # the artifact store answers again; the API server still does not
        log = fleet.root / f"{device}.log"
        refusals = log.read_text(errors="replace").count("Refused expired desired entry")
        fleet.power_on(device)  # boots from its journal's cached spec, with no API server
        fleet.wait(
            "the restarted device refusing its expired entry",
            lambda s: s["refused"] > refusals,
            60,
            lambda: {"refused": log.read_text(errors="replace").count("Refused expired desired entry")},
        )
        time.sleep(4)  # long enough to have downloaded the 10 KB bundle and switched, had it tried
        served = invariants.served({device: fleet.sockets[device]})[device]
        assert served["revision"] == stable, served
        cached = journal(fleet, device)
        assert any(m["revision"] == aborted for m in cached["spec"]["models"]), "it still holds the aborted entry"
        slots = cached["models"]["adder"]["slots"]
        assert all(slot["revision"] != aborted for slot in slots.values()), slots
    finally:
        fleet.store_proxy.held = False
    fleet.reconnect(device)  # network back: it learns its current entry (stable) and reports
    fleet.wait(
        "the device reachable and on stable again",
        lambda s: s["state"] == ("Active", stable, stable),
        90,
        lambda: {
            "state": (
                report(devices(fleet)[device]).get("state"),
                report(devices(fleet)[device]).get("activeRevision"),
                desired(devices(fleet)[device]),
            )
        },
    )
    status = fleet.wait("no device unreachable", lambda s: (s.get("reachability") or {}).get("unreachable") == 0, 60)
    assert status["stableRevision"] == stable and status["abortedRevision"] == aborted
    assert {s["revision"] for s in invariants.served(fleet.sockets).values()} == {stable}
    # No device ever committed the aborted revision to a slot (the other canaries were asked back to stable before
    # their held downloads finished, and abandoned them).
    slots = {d: journal(fleet, d)["models"]["adder"]["slots"] for d in fleet.agents}
    assert all(slot["revision"] != aborted for held in slots.values() for slot in held.values()), slots
