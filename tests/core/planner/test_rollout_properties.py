"""Hypothesis invariants of the rollout planner over random fleets, policies and device behaviour."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefleet.api import common
from edgefleet.core import canary, planner, revisions
from edgefleet.core.planner import reachability
from edgefleet.testing import rollout
from edgefleet.testing.rollout import Fleet

BEHAVIOURS = ("Healthy", "Healthy", "Healthy", "Unhealthy", "RolledBack", "Silent", None)


@st.composite
def fleets(draw: st.DrawFn) -> list[Any]:
    n = draw(st.integers(min_value=1, max_value=24))
    placements = draw(
        st.lists(
            st.tuples(st.sampled_from("ab"), st.sampled_from("xyz"), st.sampled_from(["x86", "arm64"])),
            min_size=n,
            max_size=n,
        )
    )
    return [rollout.device(f"d{i:02d}", s, line, hw) for i, (s, line, hw) in enumerate(placements)]


@st.composite
def step_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    weights = [*sorted(set(draw(st.lists(st.integers(min_value=1, max_value=99), max_size=3)))), 100]
    steps: list[dict[str, Any]] = []
    for w in weights:
        steps.append({"setWeight": w})
        extra = draw(st.sampled_from(["none", "pause", "analysis"]))
        if extra == "pause":
            steps.append({"pause": {"durationSeconds": draw(st.sampled_from([0, 30]))}})
        elif extra == "analysis":
            steps.append({"analysis": {"durationSeconds": 20, "minSamples": draw(st.sampled_from([0, 100]))}})
    return steps


max_unavailable = st.one_of(st.integers(min_value=0, max_value=6), st.sampled_from(["10%", "25%", "50%", "100%"]))


def limit(fleet: Fleet) -> int:
    targeted = sum(fleet.md.spec.selector.matches(d.metadata.labels or {}) for d in fleet.devices.values())
    return planner.resolve_max_unavailable(fleet.md.spec.rollout.max_unavailable, targeted)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(devices=fleets(), steps=step_lists(), mu=max_unavailable, data=st.data())
def test_never_more_than_max_unavailable_planning_twice_equals_once_and_rollouts_end(
    devices: list[Any], steps: list[dict[str, Any]], mu: int | str, data: st.DataObject
) -> None:
    fleet = Fleet.new(rollout.spec(steps=steps, max_unavailable=mu, deadline=60), devices)
    for round_ in range(14):
        if round_ == 5:
            fleet.set_spec(rollout.spec(version="2.0.0", steps=steps, max_unavailable=mu, deadline=60))
        if round_ == 10 and data.draw(st.booleans(), label="third version"):
            fleet.set_spec(rollout.spec(version="3.0.0", steps=steps, max_unavailable=mu, deadline=60))
        # Devices that report nothing for their change (behaviour None) become unreachable after the pickup timeout;
        # maxUnavailable counts what the rollout made unavailable among the devices it can reach.
        reachable = judged(fleet)
        before = reachable_unavailable(fleet, reachable)
        p = fleet.reconcile()
        after = reachable_unavailable(fleet, reachable)
        assert after <= max(limit(fleet), before), (before, after, limit(fleet))
        again = fleet.plan()
        assert again.changes == () and again.events == () and again.status == p.status
        assert again.requeue_after == p.requeue_after
        behaviour = data.draw(st.lists(st.sampled_from(BEHAVIOURS), min_size=len(devices), max_size=len(devices)))
        by_name = dict(zip(sorted(fleet.devices), behaviour, strict=True))
        fleet.report(lambda d, _r, by_name=by_name: by_name[d], samples=data.draw(st.sampled_from([10, 200])))
        fleet.tick(data.draw(st.sampled_from([5, 25, 70])))
    # Liveness: once every device behaves and reports, the rollout ends, with every device on stable.
    for _ in range(120):
        p = fleet.reconcile()
        fleet.report()
        fleet.tick(5)
        settled = not any(c.type == "Reconciling" for c in p.status.conditions)
        if p.status.canary_revision is None and p.status.phase in ("Healthy", "RolledBack") and settled:
            break
    assert p.status.canary_revision is None and p.status.phase in ("Healthy", "RolledBack"), p.status.phase
    stable = p.status.stable_revision
    assert all(r == stable for r in fleet.desired_revisions().values()), fleet.desired_revisions()


@settings(max_examples=60, deadline=None)
@given(devices=fleets(), weight=st.integers(min_value=1, max_value=99))
def test_canary_share_matches_the_step_weight_within_one_device(devices: list[Any], weight: int) -> None:
    steps = [{"setWeight": weight}, {"pause": {}}, {"setWeight": 100}]
    fleet = Fleet.new(rollout.spec(steps=steps, max_unavailable="100%"), devices)
    fleet.run(rounds=3)
    fleet.set_spec(rollout.spec(version="2.0.0", steps=steps, max_unavailable="100%"))
    fleet.run(rounds=6)
    assert fleet.status.phase == "Paused" and fleet.status.current_step_index == 1
    canaries = fleet.on(revisions.revision_of(fleet.md.spec))
    lines: dict[tuple[str, str], int] = {}
    for d in devices:
        labels = d.metadata.labels or {}
        key = (labels[common.LABEL_SITE], labels[common.LABEL_LINE])
        lines[key] = lines.get(key, 0) + 1
    n = len(devices)
    capacity = n - len(lines)  # one device per line stays on stable below 100 %
    assert len(canaries) == min(canary.count_for_weight(weight, n), capacity)
    if canary.count_for_weight(weight, n) <= capacity:
        assert abs(len(canaries) - weight * n / 100) < 1
    for key, size in lines.items():
        on_line = [
            c
            for c in canaries
            if (
                (fleet.devices[c].metadata.labels or {})[common.LABEL_SITE],
                (fleet.devices[c].metadata.labels or {})[common.LABEL_LINE],
            )
            == key
        ]
        assert len(on_line) < size, f"line {key} is entirely canary at {weight} %"


@given(devices=fleets(), seed=st.text(max_size=8))
def test_line_keepers_are_the_last_device_of_each_line_in_canary_order(devices: list[Any], seed: str) -> None:
    labels = {d.metadata.name: dict(d.metadata.labels or {}) for d in devices}
    keepers = canary.line_keepers(labels, seed)
    ordered = canary.order(labels, seed)

    def line(name: str) -> tuple[str, str]:
        return labels[name][common.LABEL_SITE], labels[name][common.LABEL_LINE]

    assert len(keepers) == len({line(n) for n in labels})
    for keeper in keepers:
        later = ordered[ordered.index(keeper) + 1 :]
        assert all(line(n) != line(keeper) for n in later)


def judged(fleet: Fleet) -> dict[str, bool]:
    """Whether the planner's rule calls each targeted device reachable now (what a pass is planned with)."""
    contacts = fleet.contacts() or {}
    out = {}
    for name, device in fleet.devices.items():
        if not fleet.md.spec.selector.matches(device.metadata.labels or {}):
            continue
        entry = next((m for m in device.spec.models if m.deployment == rollout.NAME), None)
        verdict = reachability.judge(
            entry, fleet.entry_report(name), contacts.get(name), fleet.md.spec.rollout.pickup_timeout_seconds, fleet.now
        )
        out[name] = verdict.reachable
    return out


def reachable_unavailable(fleet: Fleet, reachable: dict[str, bool]) -> int:
    count = 0
    for name, ok in reachable.items():
        entry = next((m for m in fleet.devices[name].spec.models if m.deployment == rollout.NAME), None)
        report = fleet.entry_report(name)
        if ok and entry is not None and (report is None or report.active_revision != entry.revision):
            count += 1
    return count


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    devices=fleets(),
    steps=step_lists(),
    mu=max_unavailable,
    unreachable_limit=st.sampled_from([0, 2, "20%", "50%", "100%"]),
    validity=st.sampled_from([60, 600, 12 * 3600]),
    data=st.data(),
)
def test_any_reachability_pattern_keeps_the_budget_idempotence_and_the_canary_and_rollouts_end(
    devices: list[Any],
    steps: list[dict[str, Any]],
    mu: int | str,
    unreachable_limit: int | str,
    validity: int,
    data: st.DataObject,
) -> None:
    """Devices lose power and return at random (Leases of 60 s), some renew their Lease but never report anything:
    reachable-only accounting never lets more than ``maxUnavailable`` reachable devices be off what they run, planning
    twice equals planning once, the operator writes an unreachable device nothing but what it runs, reachable canaries
    stay canaries, and once everyone is back and behaves the rollout ends with every device on stable."""

    def policy(version: str) -> Any:
        return rollout.spec(
            version=version, steps=steps, max_unavailable=mu, deadline=60, max_unreachable=unreachable_limit,
            pickup=30, validity=validity,
        )  # fmt: skip

    fleet = Fleet.new(policy("1.0.0"), devices).with_leases(60)
    names = sorted(fleet.devices)
    canary_before: set[str] = set()
    for round_ in range(16):
        if round_ == 5:
            fleet.set_spec(policy("2.0.0"))
        if round_ == 11 and data.draw(st.booleans(), label="third version"):
            fleet.set_spec(policy("3.0.0"))
        power = data.draw(st.lists(st.sampled_from(["on", "on", "on", "off", "mute"]), min_size=len(names),
                                   max_size=len(names)), label="power")  # fmt: skip
        fleet.power_on(*[n for n, p in zip(names, power, strict=True) if p != "off" and n in fleet.off])
        fleet.power_off(*[n for n, p in zip(names, power, strict=True) if p == "off"])
        reachable = judged(fleet)
        before = reachable_unavailable(fleet, reachable)
        canary = fleet.status.canary_revision if fleet.md.status else None
        p = fleet.reconcile()
        assert reachable_unavailable(fleet, reachable) <= max(limit(fleet), before)
        for change in p.changes:
            if not reachable.get(change.device, True) and change.desired is not None:
                report = fleet.entry_report(change.device)
                active = report.active_revision if report is not None else None
                # What it runs; or the stable entry in place of another, on the way back, when it runs nothing.
                assert change.desired.revision in (active, None if active else p.status.stable_revision), change
        if canary is not None and p.status.canary_revision == canary:
            on_canary = {n for n in fleet.on(canary) if reachable.get(n)}
            assert canary_before & {n for n, ok in reachable.items() if ok} <= on_canary, "a canary changed hands"
        now_canary = p.status.canary_revision
        canary_before = {n for n in fleet.on(now_canary) if reachable.get(n)} if now_canary else set()
        again = fleet.plan()
        assert again.changes == () and again.events == () and again.status == p.status
        assert again.requeue_after == p.requeue_after
        behaviour = data.draw(st.lists(st.sampled_from(BEHAVIOURS), min_size=len(names), max_size=len(names)))
        by_name = dict(zip(names, behaviour, strict=True))
        muted = {n for n, p_ in zip(names, power, strict=True) if p_ == "mute"}
        said = {n: None if n in muted else by_name[n] for n in names}
        fleet.report(lambda d, _r, said=said: said[d], samples=data.draw(st.sampled_from([10, 200])))
        fleet.tick(data.draw(st.sampled_from([5, 25, 70])))
    # Liveness: everyone back and behaving, the rollout ends with every device on stable.
    fleet.power_on(*names)
    for _ in range(160):
        p = fleet.reconcile()
        fleet.report()
        fleet.tick(5)
        reconciling = any(c.type == "Reconciling" for c in p.status.conditions)
        settled = not reconciling and not p.status.reachability.unreachable
        if p.status.canary_revision is None and p.status.phase in ("Healthy", "RolledBack") and settled:
            break
    assert p.status.canary_revision is None and p.status.phase in ("Healthy", "RolledBack"), p.status.phase
    stable = p.status.stable_revision
    assert all(r == stable for r in fleet.desired_revisions().values()), fleet.desired_revisions()
