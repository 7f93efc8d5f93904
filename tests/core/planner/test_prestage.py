"""Downloads ahead of activation in the planner (``core/planner/prestage.py``): who is named when, the per-site
budget with one device first, activation still by the steps, and the prestage cleared when the canary ends."""

from __future__ import annotations

from collections import Counter

from edgefleet.api import common
from edgefleet.core import revisions
from edgefleet.testing import rollout
from edgefleet.testing.rollout import Fleet

STEPS = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]


def _fleet(n: int = 24, **prestage: object) -> Fleet:
    kwargs: dict[str, object] = {"steps": STEPS, "max_unavailable": "25%", "prestage": prestage or {}}
    fleet = Fleet.new(rollout.spec(**kwargs), rollout.layout(n, sites=2))  # type: ignore[arg-type]
    fleet.run()
    assert fleet.status.phase == "Healthy"
    fleet.set_spec(rollout.spec(version="2.0.0", **kwargs))  # type: ignore[arg-type]
    return fleet


def named(fleet: Fleet, revision: str) -> dict[str, str]:
    """Device -> site of the devices whose entry names ``revision`` to download ahead."""
    out = {}
    for name, dev in fleet.devices.items():
        entry = dev.spec.models[0]
        if entry.prestage is not None and entry.prestage.revision == revision:
            out[name] = (dev.metadata.labels or {})[common.LABEL_SITE]
    return out


def test_one_device_per_site_first_then_the_budget_and_activation_still_follows_the_steps() -> None:
    fleet = _fleet(maxConcurrentPerSite=3, maxBytesPerSecondPerSite=3_000_000)
    new = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    canaries = set(fleet.on(new))
    assert len(canaries) == 3  # 10 % of 24 (rounded up), switched by the step, not by the prestage
    first = named(fleet, new)
    assert sorted(Counter(first.values()).values()) == [1, 1] and not canaries & set(first)
    assert all(fleet.devices[d].spec.models[0].prestage.max_bytes_per_second == 1_000_000 for d in first)  # type: ignore[union-attr]
    assert all(fleet.devices[d].spec.models[0].revision != new for d in first)  # still running stable
    fleet.report()  # the named devices report the canary staged; the canaries report it active
    fleet.reconcile()
    assert fleet.status.current_step_index == 1 and fleet.status.phase == "Paused"
    assert fleet.status.devices.staged == 2
    second = named(fleet, new)
    assert set(first) < set(second)
    assert Counter(second.values()) == Counter({"site-0": 4, "site-1": 4})  # 1 staged + 3 downloading per site
    for _ in range(10):
        fleet.report()
        fleet.reconcile()
    assert fleet.status.devices.staged == 24 - 3 and len(fleet.on(new)) == 3  # the pause still holds activation
    assert fleet.unavailable() == 0


def test_prestage_is_cleared_when_the_canary_is_aborted() -> None:
    fleet = _fleet(maxConcurrentPerSite=10)
    new = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    fleet.report()
    fleet.reconcile()
    assert named(fleet, new) and fleet.status.devices.staged > 0
    fleet.annotate("edgefleet.io/abort", new)
    fleet.run()
    assert fleet.status.phase == "RolledBack"
    assert named(fleet, new) == {} and fleet.status.devices.staged == 0


def test_without_prestage_no_entry_names_a_download_ahead() -> None:
    kwargs: dict[str, object] = {"steps": STEPS}
    fleet = Fleet.new(rollout.spec(**kwargs), rollout.layout(12))  # type: ignore[arg-type]
    fleet.run()
    fleet.set_spec(rollout.spec(version="2.0.0", **kwargs))  # type: ignore[arg-type]
    fleet.reconcile()
    fleet.report()
    fleet.reconcile()
    assert named(fleet, revisions.revision_of(fleet.md.spec)) == {} and fleet.status.devices.staged == 0


def test_planning_twice_with_prestage_changes_nothing() -> None:
    fleet = _fleet(maxConcurrentPerSite=2)
    fleet.reconcile()
    fleet.report()
    first = fleet.reconcile()
    again = fleet.plan()
    assert again.changes == () and again.status == first.status
