"""Rollouts over fleets that are never all online (``core/planner/reachability.py`` and its use by the planner):
scenario tests on the in-memory fleet, with Leases, devices that lose power and come back, asserting the resulting
desired state and status."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from edgefleet.core import canary, revisions
from edgefleet.core.planner import reachability
from edgefleet.testing import rollout
from edgefleet.testing.rollout import Fleet

LEASE = 60.0
STEPS = [{"setWeight": 10}, {"pause": {"durationSeconds": 0}}, {"setWeight": 50}, {"setWeight": 100}]


def stable_fleet(n: int = 20, layout: list[Any] | None = None, **kwargs: object) -> Fleet:
    """``n`` devices with Leases, 1.0.0 stable on all; the spec now asks for 2.0.0."""
    kwargs.setdefault("steps", STEPS)
    devices = layout or rollout.layout(n)
    fleet = Fleet.new(rollout.spec(**kwargs), devices).with_leases(LEASE)  # type: ignore[arg-type]
    fleet.run()
    assert fleet.status.phase == "Healthy"
    fleet.set_spec(rollout.spec(version="2.0.0", **kwargs))  # type: ignore[arg-type]
    return fleet


def order(fleet: Fleet) -> list[str]:
    return canary.order({n: dict(d.metadata.labels or {}) for n, d in fleet.devices.items()}, rollout.NAME)


def test_devices_with_expired_leases_are_never_canaries_and_are_listed() -> None:
    fleet = stable_fleet()
    old, new = fleet.status.stable_revision, revisions.revision_of(fleet.md.spec)
    dead = order(fleet)[:3]  # exactly the devices the canary order would pick first
    off_at = fleet.now
    fleet.power_off(*dead)
    fleet.tick(LEASE + 1)
    p = fleet.reconcile()
    canaries = fleet.on(new)
    assert len(canaries) == 2 and not set(canaries) & set(dead)
    assert all(fleet.desired_revisions()[d] == old for d in dead)
    reach = p.status.reachability
    assert (reach.reachable, reach.unreachable) == (17, 3)
    assert sorted(d.name for d in reach.devices) == sorted(dead)
    assert {d.reason for d in reach.devices} == {"LeaseExpired"}
    assert all(d.since == off_at + dt.timedelta(seconds=LEASE) for d in reach.devices), reach.devices


def test_final_step_completes_on_the_reachable_fleet_and_a_returning_device_gets_the_new_stable() -> None:
    fleet = stable_fleet(max_unavailable=4)
    old, new = fleet.status.stable_revision, revisions.revision_of(fleet.md.spec)
    dead = ["dev-03", "dev-11"]
    fleet.power_off(*dead)
    fleet.tick(LEASE + 1)
    fleet.run(rounds=60)
    assert fleet.status.phase == "Healthy" and fleet.status.stable_revision == new
    assert fleet.status.canary_revision is None and fleet.status.aborted_revision is None
    ready = fleet.condition("Ready")
    assert ready is not None and ready.status == "True" and ready.reason == "RolloutComplete"
    assert "2 unreachable get it when they return: dev-03, dev-11" in ready.message
    assert all(fleet.desired_revisions()[d] == old for d in dead), "nothing is written to a device that is off"
    assert fleet.status.reachability.unreachable == 2
    fleet.power_on(*dead)
    p = fleet.reconcile()
    assert all(fleet.desired_revisions()[d] == new for d in dead) and p.status.phase == "Progressing"
    fleet.run()
    assert fleet.status.phase == "Healthy" and fleet.status.reachability.unreachable == 0
    assert fleet.on(new) == sorted(fleet.devices)


def test_a_canary_that_loses_power_while_installing_is_replaced_and_gets_stable_when_it_returns() -> None:
    fleet = stable_fleet(deadline=600)
    old, new = fleet.status.stable_revision, revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    first = fleet.on(new)
    victim = first[0]
    fleet.report(lambda d, _r: "Silent" if d == victim else "Healthy")  # it was downloading when the power went
    fleet.power_off(victim)
    fleet.tick(LEASE + 1)
    p = fleet.reconcile()
    canaries = fleet.on(new)
    assert victim not in canaries and len(canaries) == 2 and set(first) - {victim} <= set(canaries)
    assert fleet.desired_revisions()[victim] == old, "released: it will not install the canary when it returns"
    assert p.status.phase == "Progressing" and p.status.aborted_revision is None
    fleet.report()
    fleet.reconcile()
    assert fleet.status.current_step_index == 2  # the step completed with the replacement
    fleet.power_on(victim)
    fleet.reconcile()
    assert fleet.desired_revisions()[victim] in (old, new)
    fleet.run()
    assert fleet.status.phase == "Healthy" and fleet.status.stable_revision == new
    assert fleet.on(new) == sorted(fleet.devices)


def test_a_canary_that_never_picks_up_is_unreachable_not_failed_even_past_the_deadline() -> None:
    fleet = stable_fleet(deadline=60)  # a deadline shorter than the 120 s pickup timeout
    new = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    zombie = fleet.on(new)[0]
    # Its Lease stays fresh, but it never reports anything for the canary (its spec never reaches it).
    fleet.report(lambda d, r: None if d == zombie else "Healthy")
    fleet.tick(61)
    assert fleet.reconcile().status.phase == "Progressing", "the deadline waits for the pickup timeout"
    fleet.tick(60)
    p = fleet.reconcile()
    assert p.status.phase == "Progressing" and p.status.aborted_revision is None
    assert [(d.name, d.reason) for d in p.status.reachability.devices] == [(zombie, "NotPickedUp")]
    canaries = fleet.on(new)
    assert zombie in canaries and len(canaries) == 3, "it keeps its entry; another device takes its place"
    again = fleet.plan()
    assert again.changes == () and again.status == p.status
    fleet.report(lambda d, r: None if d == zombie else "Healthy")
    fleet.reconcile()
    assert fleet.status.current_step_index == 2
    fleet.run(lambda d, r: None if d == zombie else "Healthy", rounds=60)
    assert fleet.status.phase == "Healthy" and fleet.status.stable_revision == new
    fleet.report()  # it finally reports: it runs the entry it kept, the new stable
    assert fleet.reconcile().status.reachability.unreachable == 0


def test_more_unreachable_than_max_unreachable_holds_the_rollout_until_they_return() -> None:
    fleet = stable_fleet(deadline=60)
    old, new = fleet.status.stable_revision, revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    fleet.report()
    fleet.reconcile()
    assert fleet.status.current_step_index == 2
    lost = [n for n in sorted(fleet.devices) if fleet.desired_revisions()[n] == old][:10]
    fleet.power_off(*lost)
    fleet.tick(LEASE + 1)
    before = fleet.desired_revisions()
    p = fleet.reconcile()
    assert p.status.phase == "Paused" and p.status.aborted_revision is None
    assert fleet.desired_revisions() == before, "a held rollout changes no device"
    ready, reconciling = fleet.condition("Ready"), fleet.condition("Reconciling")
    assert ready is not None and ready.status == "Unknown" and ready.reason == "TooManyUnreachable"
    assert "10/20 targeted devices are unreachable" in ready.message and "maxUnreachable 20% (4)" in ready.message
    assert reconciling is not None and reconciling.reason == "TooManyUnreachable"
    held = p.status.reachability.held_since
    assert held == fleet.now
    for _ in range(20):  # hours held: no deadline passes, nothing is guessed
        fleet.tick(600)
        fleet.report()
        assert fleet.reconcile().status.phase == "Paused"
    fleet.power_on(*lost)
    fleet.report()
    p = fleet.reconcile()
    assert p.status.phase == "Paused" and p.status.reachability.recovering_since == fleet.now
    assert "resumes after 60s in a row" in (fleet.condition("Ready") or pytest.fail("no Ready")).message
    fleet.tick(reachability.MIN_HOLD_SECONDS)
    fleet.report()
    p = fleet.reconcile()
    assert p.status.phase == "Progressing" and p.status.reachability.held_since is None
    fleet.run()
    assert fleet.status.phase == "Healthy" and fleet.status.stable_revision == new
    assert fleet.on(new) == sorted(fleet.devices)


def test_a_flapping_device_at_the_threshold_keeps_the_rollout_held_instead_of_thrashing() -> None:
    fleet = stable_fleet()
    fleet.reconcile()
    fleet.report()
    fleet.reconcile()
    four = ["dev-01", "dev-02", "dev-05", "dev-06"]  # exactly maxUnreachable (20 % of 20)
    flapper = "dev-09"
    fleet.power_off(*four, flapper)
    fleet.tick(LEASE + 1)
    assert fleet.reconcile().status.phase == "Paused"
    before = fleet.desired_revisions()
    for i in range(12):  # the fifth device comes back and goes again every 20 s for four minutes
        if i % 2 == 0:
            fleet.power_on(flapper)
        else:
            fleet.power_off(flapper)
            fleet.renewed[flapper] = fleet.now - dt.timedelta(seconds=LEASE + 1)  # as if gone long enough to count
        fleet.tick(20)
        fleet.report()
        p = fleet.reconcile()
        assert p.status.phase == "Paused" and fleet.desired_revisions() == before, i
    fleet.power_on(flapper)  # it stays: within maxUnreachable for MIN_HOLD_SECONDS in a row, the rollout resumes
    fleet.tick(reachability.MIN_HOLD_SECONDS / 2)
    fleet.report()
    assert fleet.reconcile().status.reachability.recovering_since is not None
    fleet.tick(reachability.MIN_HOLD_SECONDS)
    fleet.report()
    p = fleet.reconcile()
    assert p.status.phase == "Progressing" and p.status.reachability.held_since is None


def test_max_unavailable_counts_only_what_the_rollout_made_unavailable() -> None:
    fleet = stable_fleet(max_unavailable=1, steps=[{"setWeight": 100}])
    new = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    first = fleet.on(new)
    assert len(first) == 1
    fleet.report(lambda d, _r: "Silent" if d in first else "Healthy")  # it started installing...
    fleet.power_off(*first)  # ...and lost power: it must not hold the only unit of budget forever
    fleet.tick(LEASE + 1)
    fleet.reconcile()
    assert len(fleet.on(new)) == 1 and fleet.on(new) != first
    fleet.run(rounds=80)
    assert fleet.status.phase == "Healthy" and fleet.status.stable_revision == new
    assert len(fleet.on(new)) == 19


def test_after_an_abort_an_offline_canary_keeps_what_it_runs_and_returns_to_stable_when_back() -> None:
    fleet = stable_fleet(steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}])
    old, new = fleet.status.stable_revision, revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    fleet.report()
    fleet.reconcile()
    a, b = fleet.on(new)
    fleet.power_off(a)  # it runs the canary
    fleet.tick(LEASE + 1)
    fleet.report(lambda d, r: "Unhealthy" if d == b and r == new else "Healthy")
    p = fleet.reconcile()
    assert p.status.phase == "RolledBack" and p.status.aborted_revision == new
    assert fleet.desired_revisions()[a] == new, "an offline device is not asked to change what it runs"
    assert fleet.desired_revisions()[b] == old
    fleet.power_on(a)
    fleet.reconcile()
    assert fleet.desired_revisions()[a] == old
    fleet.run()
    assert fleet.on(old) == sorted(fleet.devices) and fleet.status.phase == "RolledBack"


def test_entries_carry_a_validity_that_is_refreshed_before_half_of_it_passed() -> None:
    fleet = stable_fleet(validity=3600)
    new = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    canaries = fleet.on(new)
    entry = fleet.devices[canaries[0]].spec.models[0]
    assert entry.validity is not None
    assert entry.validity.assigned_at == fleet.now and entry.validity.expires_at == fleet.now + dt.timedelta(hours=1)
    fleet.report()
    assigned = {n: d.spec.models[0].validity for n, d in fleet.devices.items()}
    fleet.power_off("dev-19")
    refreshed: dict[str, dt.datetime] = {}
    for _ in range(60):  # an hour and a half in one-minute passes, the rollout held at its pause step
        fleet.annotate("edgefleet.io/paused", "true")
        p = fleet.reconcile()
        for change in p.changes:
            validity = change.desired.validity if change.desired else None
            assert validity is not None
            assert validity.assigned_at == (assigned[change.device] or validity).assigned_at, "a refresh keeps it"
            left = (fleet.now - refreshed.get(change.device, assigned[change.device].assigned_at)).total_seconds()
            assert 1800 <= left <= 2700 + 60, (change.device, left)
            refreshed[change.device] = fleet.now
        assert fleet.plan().changes == (), "planning twice equals planning once"
        fleet.report()
        fleet.tick(60)
    assert "dev-19" not in refreshed, "the entry of an unreachable device lapses"
    spread = sorted(refreshed.values())
    assert spread[-1] - spread[0] >= dt.timedelta(minutes=10), "refreshes of entries written together are spread"
    assert len(refreshed) == 19


def test_only_current_entries_are_refreshed() -> None:
    fleet = stable_fleet(validity=600, steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}])
    old, new = fleet.status.stable_revision, revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    fleet.report()
    fleet.reconcile()
    a, _ = fleet.on(new)
    fleet.power_off(a)
    fleet.tick(LEASE + 1)
    fleet.annotate("edgefleet.io/abort", new)
    fleet.reconcile()
    assert fleet.desired_revisions()[a] == new
    fleet.power_on(a)
    fleet.renewed[a] = fleet.now  # back, but suppose the budget kept it on the aborted revision
    for _ in range(20):
        fleet.tick(60)
        fleet.reconcile()
    assert fleet.desired_revisions()[a] == old


def test_an_analysis_whose_canaries_are_all_unreachable_neither_passes_nor_fails() -> None:
    steps = [{"setWeight": 10}, {"analysis": {"durationSeconds": 60, "minSamples": 10}}, {"setWeight": 100}]
    # One line of two devices: one canary, and the other is the line's keeper, so nobody can replace it.
    fleet = stable_fleet(2, layout=rollout.layout(2, sites=1, lines=1), steps=steps, deadline=60, max_unreachable=1)
    new = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    fleet.report()
    fleet.reconcile()
    assert fleet.status.current_step_index == 1
    (only,) = fleet.on(new)
    fleet.power_off(only)
    for _ in range(10):
        fleet.tick(LEASE + 1)
        fleet.report()
        p = fleet.reconcile()
        assert p.status.current_step_index == 1 and p.status.aborted_revision is None, p.status.phase
    assert "no reachable device runs the canary" in (fleet.condition("Ready") or pytest.fail("no Ready")).message


def test_a_line_keeps_a_reachable_device_on_stable_when_its_keeper_is_unreachable() -> None:
    steps = [{"setWeight": 90}, {"pause": {}}, {"setWeight": 100}]
    fleet = stable_fleet(12, steps=steps, max_unreachable=4, max_unavailable=12)  # four lines of three
    new = revisions.revision_of(fleet.md.spec)
    labels = {n: dict(d.metadata.labels or {}) for n, d in fleet.devices.items()}
    keepers = canary.line_keepers(labels, rollout.NAME)
    assert len(keepers) == 4
    fleet.power_off(*keepers)
    fleet.tick(LEASE + 1)
    fleet.run(rounds=10)
    assert fleet.status.current_step_index == 1 and fleet.status.phase == "Paused"
    for line in {canary.line_of(v) for v in labels.values()}:
        reachable = [n for n in labels if canary.line_of(labels[n]) == line and n not in keepers]
        assert len(reachable) == 2
        assert sorted(fleet.desired_revisions()[n] == new for n in reachable) == [False, True], line


def test_a_device_released_from_a_superseded_revision_is_judged_in_the_same_pass_as_in_the_next() -> None:
    # Found by the Hypothesis property: a canary rejected 2.0.0 and 3.0.0 superseded it. The pass that put it back on
    # stable then judged it "not on what it was asked for" and the next pass made it a canary: planning twice differed.
    fleet = stable_fleet(5, steps=[{"setWeight": 20}, {"setWeight": 100}], max_unavailable=1)
    second = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    rejected = fleet.on(second)
    assert len(rejected) == 1
    fleet.report(lambda d, _r: "RolledBack" if d in rejected else "Healthy")
    fleet.set_spec(rollout.spec(version="3.0.0", steps=[{"setWeight": 20}, {"setWeight": 100}], max_unavailable=1))
    third = revisions.revision_of(fleet.md.spec)
    p = fleet.reconcile()
    assert p.status.canary_revision == third and fleet.on(second) == []
    again = fleet.plan()
    assert again.changes == () and again.status == p.status
    assert len(fleet.on(third)) == 1
