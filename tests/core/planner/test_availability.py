"""The availability ledger: maxUnavailable, maintenance windows and free changes, as table tests."""

from __future__ import annotations

import pytest

from edgefleet.api import edgedevice
from edgefleet.core.planner import availability, devices
from edgefleet.testing import rollout as sim

OLD = sim.template(sim.spec()).desired_for(sim.NAME, {})
NEW = sim.template(sim.spec(version="2.0.0")).desired_for(sim.NAME, {})
assert OLD is not None and NEW is not None


def view(name: str, has: edgedevice.DesiredModel | None, runs: str | None, targeted: bool = True) -> devices.DeviceView:
    report = edgedevice.ModelStatus(name=sim.MODEL, state="Active", active_revision=runs) if runs else None
    return devices.DeviceView(name, {}, targeted, False, has, report, False, True)


@pytest.mark.parametrize(
    ("value", "total", "limit"),
    [(3, 20, 3), ("25%", 20, 5), ("25%", 3, 1), ("1%", 20, 1), (0, 20, 1), ("100%", 7, 7)],
)
def test_resolve_max_unavailable(value: int | str, total: int, limit: int) -> None:
    assert availability.resolve_max_unavailable(value, total) == limit


@pytest.mark.parametrize(
    ("has", "runs", "to", "budget", "window", "moved", "budget_after", "blocked"),
    [
        (OLD, OLD.revision, NEW, 1, True, True, 0, False),  # costly: spends the budget
        (OLD, OLD.revision, NEW, 0, True, False, 0, False),  # costly, no budget left
        (OLD, OLD.revision, NEW, 1, False, False, 1, True),  # costly outside a maintenance window
        (NEW, OLD.revision, OLD, 0, False, True, 1, False),  # free: back to what it runs, gives budget back
        (None, None, OLD, 0, False, False, 0, True),  # a new install makes the device unavailable too
        (OLD, OLD.revision, OLD, 0, False, True, 0, False),  # already there
    ],
)
def test_switch(
    has: edgedevice.DesiredModel | None,
    runs: str | None,
    to: edgedevice.DesiredModel,
    budget: int,
    window: bool,
    moved: bool,
    budget_after: int,
    blocked: bool,
) -> None:
    device = view("d", has, runs)
    ledger = availability.Ledger([device], limit=1, window_open=window)
    ledger.budget = budget
    assert ledger.switch(device, to) is moved
    assert ledger.entry(device) == (to if moved else has)
    assert (ledger.budget, ledger.blocked_by_window) == (budget_after, blocked)


def test_the_budget_counts_devices_already_unavailable() -> None:
    views = [view("a", NEW, OLD.revision), view("b", OLD, OLD.revision), view("c", OLD, None, targeted=False)]
    assert availability.Ledger(views, limit=2, window_open=True).budget == 1


def test_converge_makes_free_changes_first_so_they_never_wait_for_budget() -> None:
    stuck = view("a-stuck", NEW, OLD.revision)  # asked for NEW, still runs OLD: returning it is free
    fine = view("b-fine", OLD, OLD.revision)
    ledger = availability.Ledger([stuck, fine], limit=1, window_open=True)
    assert ledger.budget == 0
    ledger.converge([(fine, NEW), (stuck, OLD)])
    assert ledger.entry(stuck) == OLD and ledger.entry(fine) == NEW and ledger.budget == 0


def test_release_snapshot_restore_and_changes() -> None:
    gone = view("gone", OLD, OLD.revision, targeted=False)
    kept = view("kept", OLD, OLD.revision)
    ledger = availability.Ledger([gone, kept], limit=1, window_open=True)
    ledger.release_untargeted([gone, kept])
    before = ledger.snapshot()
    ledger.switch(kept, NEW)
    assert [d.name for d in ledger.on(NEW.revision, [gone, kept])] == ["kept"]
    ledger.restore(before)
    assert ledger.changes([gone, kept]) == (devices.DeviceChange("gone", None),)
