"""The rollout planner's pass (``core/planner/rollout.py``): scenario tests on an in-memory fleet, asserting the
resulting desired state and status."""

from __future__ import annotations

import datetime as dt

import pytest

from edgefleet.api import common
from edgefleet.core import planner, revisions
from edgefleet.testing import rollout
from edgefleet.testing.rollout import Fleet


def promoted_fleet(n: int = 20, **kwargs: object) -> Fleet:
    """A fleet where version 1.0.0 is stable on every device, and the spec now asks for 2.0.0."""
    fleet = Fleet.new(rollout.spec(**kwargs), rollout.layout(n))  # type: ignore[arg-type]
    fleet.run()
    assert fleet.status.phase == "Healthy"
    fleet.set_spec(rollout.spec(version="2.0.0", **kwargs))  # type: ignore[arg-type]
    return fleet


def reasons(fleet: Fleet) -> list[str]:
    return [e.reason for e in fleet.events]


def test_first_revision_installs_everywhere_within_max_unavailable() -> None:
    fleet = Fleet.new(rollout.spec(max_unavailable="25%"), rollout.layout(20))
    first = fleet.reconcile()
    assert len(first.changes) == 5  # 25 % of 20
    assert first.status.phase == "Progressing"
    assert first.status.stable_revision == revisions.revision_of(fleet.md.spec)
    assert fleet.condition("Reconciling") is not None
    fleet.run()
    assert fleet.status.phase == "Healthy"
    assert fleet.on(fleet.status.stable_revision) == sorted(fleet.devices)
    ready = fleet.condition("Ready")
    assert ready is not None and ready.status == "True" and ready.observed_generation == 1
    assert fleet.condition("Reconciling") is None and fleet.condition("Stalled") is None


def test_devices_get_the_artifact_of_their_hardware_class() -> None:
    fleet = Fleet.new(rollout.spec(max_unavailable=100), rollout.layout(6))
    fleet.reconcile()
    for name, dev in fleet.devices.items():
        entry = dev.spec.models[0]
        hw = (dev.metadata.labels or {})[common.LABEL_HARDWARE_CLASS]
        assert entry.artifact.precision == ("int8" if hw == "arm64" else "fp32"), name
        assert entry.deployment == rollout.NAME and entry.name == rollout.MODEL


def test_happy_path_goes_canary_then_waves_then_full() -> None:
    fleet = promoted_fleet(20)
    old, new = fleet.status.stable_revision, revisions.revision_of(fleet.md.spec)
    p = fleet.reconcile()
    assert p.status.canary_revision == new and p.status.current_step_index == 0
    assert len(fleet.on(new)) == 2  # 10 % of 20
    canary_lines = {
        tuple((fleet.devices[n].metadata.labels or {})[k] for k in (common.LABEL_SITE, common.LABEL_LINE))
        for n in fleet.on(new)
    }
    assert len(canary_lines) == 2, "the first canaries are on different lines"
    fleet.report()
    fleet.reconcile()
    assert fleet.status.current_step_index == 1  # setWeight done, analysis running
    assert fleet.status.phase == "Progressing"
    fleet.tick(30)
    fleet.report(samples=60)
    fleet.reconcile()
    assert fleet.status.current_step_index == 1, "the 60 s analysis window has not passed"
    fleet.tick(31)
    fleet.reconcile()
    assert fleet.status.current_step_index == 2
    assert len(fleet.on(new)) == 7  # 2 + the 5 that maxUnavailable allows at once
    fleet.report()
    fleet.reconcile()
    assert len(fleet.on(new)) == 10  # 50 %
    fleet.run()
    assert fleet.status.phase == "Healthy"
    assert fleet.status.stable_revision == new and fleet.status.canary_revision is None
    assert fleet.on(new) == sorted(fleet.devices) and fleet.on(old) == []
    assert reasons(fleet).count("StepCompleted") == 4 and "Promoted" in reasons(fleet)


def test_failing_canary_is_aborted_and_rolled_back_with_evidence() -> None:
    fleet = promoted_fleet(20)
    old, new = fleet.status.stable_revision, revisions.revision_of(fleet.md.spec)

    def bad_new(_device: str, revision: str) -> str:
        return "Unhealthy" if revision == new else "Healthy"

    fleet.reconcile()
    canaries = fleet.on(new)
    fleet.report(bad_new)
    p = fleet.reconcile()
    assert p.status.phase == "RolledBack"
    assert p.status.aborted_revision == new and p.status.canary_revision is None
    assert fleet.on(old) == sorted(fleet.devices)
    ready = fleet.condition("Ready")
    assert ready is not None and ready.status == "False" and ready.reason == "RolledBack"
    assert canaries[0] in ready.message and "p95 latency" in ready.message
    # While the canaries are on their way back, the operator is acting: Reconciling, never Stalled beside it.
    rolling = fleet.condition("Reconciling")
    assert rolling is not None and rolling.reason == "RollingBack" and fleet.condition("Stalled") is None
    assert p.status.devices.revision == new and p.status.devices.updated == 0
    assert p.status.devices.stable == 20
    assert any(e.reason == "RolloutAborted" and e.type == "Warning" for e in p.events)
    never_canary = set(fleet.devices) - set(canaries)
    assert all(new not in fleet.history.get(n, []) for n in never_canary)
    # The aborted revision is not retried while the spec stays the same.
    fleet.report()
    fleet.tick(3600)
    again = fleet.reconcile()
    assert again.status.phase == "RolledBack" and again.status.canary_revision is None and not again.changes
    assert ready.message == (fleet.condition("Ready") or ready).message
    assert fleet.condition("Reconciling") is None
    stalled = fleet.condition("Stalled")
    assert stalled is not None and stalled.reason == "RolledBack"
    # A new spec lifts the ban.
    fleet.set_spec(rollout.spec(version="2.0.1"))
    p = fleet.reconcile()
    assert p.status.aborted_revision is None and p.status.canary_revision == revisions.revision_of(fleet.md.spec)


def test_device_that_rolled_itself_back_counts_as_failed() -> None:
    fleet = promoted_fleet(20)
    new = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    fleet.report(lambda _d, r: "RolledBack" if r == new else "Healthy")
    p = fleet.reconcile()
    assert p.status.phase == "RolledBack"
    assert "smoke test failed" in (fleet.condition("Ready") or pytest.fail("no Ready")).message
    # The devices that rolled back run stable already, so returning them costs no availability.
    assert fleet.unavailable() == 0


def test_silent_canary_fails_the_analysis_at_the_deadline() -> None:
    fleet = promoted_fleet(20, deadline=120)
    new = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    fleet.report()
    fleet.reconcile()
    assert fleet.status.current_step_index == 1
    silent = fleet.on(new)[0]
    # One canary stops reporting: its verdict goes stale, the other keeps reporting healthy.
    fleet.report(lambda d, r: "Silent" if d == silent else "Healthy")
    fleet.tick(61 + 100)
    assert fleet.reconcile().status.phase == "Progressing"
    fleet.tick(30)
    p = fleet.reconcile()
    assert p.status.phase == "RolledBack"
    assert f"no verdict: {silent}" in (fleet.condition("Ready") or pytest.fail("no Ready")).message


def test_set_weight_step_fails_when_devices_never_converge() -> None:
    fleet = promoted_fleet(20, deadline=60)
    fleet.reconcile()
    fleet.report(lambda _d, _r: "Silent")  # the canaries picked their change up (installing) and never finish it
    fleet.tick(61)
    p = fleet.reconcile()
    assert p.status.phase == "RolledBack"
    assert "no progress for 60s" in (fleet.condition("Ready") or pytest.fail("no Ready")).message


def test_failure_without_automatic_rollback_degrades_and_waits() -> None:
    fleet = promoted_fleet(20, automatic=False)
    new = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    canaries = fleet.on(new)
    fleet.report(lambda _d, r: "Unhealthy" if r == new else "Healthy")
    p = fleet.reconcile()
    assert p.status.phase == "Degraded" and not p.changes
    assert fleet.on(new) == canaries
    assert fleet.condition("Stalled") is not None
    assert [e.reason for e in p.events] == ["RolloutFailed"]
    assert fleet.reconcile().events == (), "the failure event is not repeated"
    fleet.annotate(planner.ANNOTATION_ABORT, new)
    p = fleet.reconcile()
    assert p.status.phase == "RolledBack" and fleet.on(new) == []


def test_manual_abort_names_the_revision_and_stale_values_are_ignored() -> None:
    fleet = promoted_fleet(20)
    new = revisions.revision_of(fleet.md.spec)
    fleet.annotate(planner.ANNOTATION_ABORT, "0.9.0-0000000000")
    fleet.reconcile()
    assert fleet.status.canary_revision == new
    fleet.annotate(planner.ANNOTATION_ABORT, new)
    p = fleet.reconcile()
    assert p.status.aborted_revision == new and fleet.on(new) == []
    assert "aborted by annotation" in (fleet.condition("Ready") or pytest.fail("no Ready")).message


def test_indefinite_pause_waits_for_promote_of_that_step() -> None:
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]
    fleet = promoted_fleet(10, steps=steps, max_unavailable=10)
    new = revisions.revision_of(fleet.md.spec)
    fleet.run(rounds=5)
    assert fleet.status.phase == "Paused" and fleet.status.current_step_index == 1
    assert "edgefleet rollout promote" in (fleet.condition("Ready") or pytest.fail("no Ready")).message
    fleet.tick(7 * 24 * 3600)
    fleet.reconcile()
    assert fleet.status.current_step_index == 1, "an indefinite pause never times out"
    fleet.annotate(planner.ANNOTATION_PROMOTE, f"{new}/0")  # names another step: ignored
    fleet.reconcile()
    assert fleet.status.current_step_index == 1
    fleet.annotate(planner.ANNOTATION_PROMOTE, f"{new}/1")
    p = fleet.reconcile()
    assert p.status.current_step_index == 2 and "StepPromoted" in [e.reason for e in p.events]
    fleet.run()
    assert fleet.status.phase == "Healthy" and fleet.status.stable_revision == new


def test_timed_pause_requeues_for_the_remaining_time() -> None:
    fleet = promoted_fleet(10, steps=[{"setWeight": 20}, {"pause": {"durationSeconds": 300}}, {"setWeight": 100}])
    fleet.reconcile()
    fleet.report()
    p = fleet.reconcile()
    assert p.status.current_step_index == 1 and p.requeue_after == pytest.approx(300)
    fleet.tick(200)
    assert fleet.reconcile().requeue_after == pytest.approx(100)
    fleet.tick(100)
    assert fleet.reconcile().status.current_step_index == 2


@pytest.mark.parametrize("how", ["spec", "annotation"])
def test_paused_rollout_changes_no_device(how: str) -> None:
    fleet = promoted_fleet(20)
    if how == "spec":
        fleet.set_spec(rollout.spec(version="2.0.0", paused=True))
    else:
        fleet.annotate(planner.ANNOTATION_PAUSED, "true")
    before = fleet.desired_revisions()
    p = fleet.reconcile()
    assert p.status.phase == "Paused" and not p.changes and fleet.desired_revisions() == before
    ready = fleet.condition("Ready")
    assert ready is not None and ready.reason == "Paused"
    assert fleet.condition("Reconciling") is None
    fleet.annotate(planner.ANNOTATION_PAUSED, None)
    fleet.set_spec(rollout.spec(version="2.0.0"))
    assert len(fleet.reconcile().changes) == 2


def test_maintenance_window_holds_switches_until_it_opens() -> None:
    window = [{"days": ["Sat"], "start": "22:00", "end": "23:00"}]
    fleet = Fleet.new(rollout.spec(windows=window), rollout.layout(4))
    p = fleet.reconcile()  # Monday 10:00
    assert not p.changes and p.status.phase == "Progressing"
    assert p.requeue_after == pytest.approx((dt.datetime(2026, 1, 10, 22, tzinfo=dt.UTC) - rollout.T0).total_seconds())
    fleet.now = dt.datetime(2026, 1, 10, 22, 30, tzinfo=dt.UTC)
    assert len(fleet.reconcile().changes) == 1  # 25 % of 4


def test_new_spec_supersedes_a_running_canary() -> None:
    fleet = promoted_fleet(20)
    old, v2 = fleet.status.stable_revision, revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    fleet.report()
    fleet.reconcile()
    assert len(fleet.on(v2)) == 2
    fleet.set_spec(rollout.spec(version="3.0.0"))
    fleet.compiled = False
    p = fleet.reconcile()
    assert p.status.phase == "Compiling" and p.status.canary_revision is None
    assert fleet.on(v2) == [] and len(fleet.on(old)) == 20
    assert "Superseded" in [e.reason for e in p.events]
    fleet.compiled = True
    p = fleet.reconcile()
    assert p.status.canary_revision == revisions.revision_of(fleet.md.spec) and p.status.current_step_index == 0


def test_spec_back_to_stable_ends_the_rollout() -> None:
    fleet = promoted_fleet(20)
    old = fleet.status.stable_revision
    fleet.reconcile()
    fleet.set_spec(rollout.spec(version="1.0.0"))
    p = fleet.reconcile()
    assert p.status.canary_revision is None and fleet.on(old) == sorted(fleet.devices)
    fleet.run()
    assert fleet.status.phase == "Healthy"


def test_late_joiner_gets_stable_during_a_rollout_and_new_after() -> None:
    fleet = promoted_fleet(20)
    old, new = fleet.status.stable_revision, revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    fleet.devices["late"] = rollout.device("late", "site-0", "line-0")
    fleet.reconcile()
    assert fleet.desired_revisions()["late"] == old
    fleet.run()
    assert fleet.status.stable_revision == new
    fleet.devices["later"] = rollout.device("later", "site-1", "line-1", "arm64")
    fleet.reconcile()
    assert fleet.desired_revisions()["later"] == new


def test_devices_leaving_the_selector_lose_the_model_and_deletion_removes_all() -> None:
    fleet = Fleet.new(rollout.spec(max_unavailable=100), rollout.layout(4))
    fleet.run()
    moved = fleet.devices["dev-01"]
    fleet.devices["dev-01"] = moved.model_copy(
        update={"metadata": moved.metadata.model_copy(update={"labels": {"app": "other"}})}
    )
    fleet.reconcile()
    assert fleet.desired_revisions()["dev-01"] is None
    assert fleet.status.devices.targeted == 3
    changes = planner.removal(fleet.md, list(fleet.devices.values()))
    assert sorted(c.device for c in changes) == ["dev-00", "dev-02", "dev-03"]
    assert all(c.desired is None for c in changes)


def test_entries_of_another_deployment_for_the_same_model_are_left_alone() -> None:
    other = rollout.device("shared")
    fleet = Fleet.new(rollout.spec(max_unavailable=100), [other])
    foreign = rollout.template(rollout.spec(version="9.9.9")).desired_for("other-deployment", {})
    assert foreign is not None
    fleet.devices["shared"] = planner.apply_change(other, "other-deployment", foreign)
    p = fleet.reconcile()
    assert not p.changes and p.status.devices.targeted == 0


def test_conditions_keep_transition_time_while_status_is_unchanged() -> None:
    fleet = promoted_fleet(20)
    fleet.reconcile()
    first = fleet.condition("Ready")
    fleet.tick(5)
    fleet.report()
    fleet.reconcile()
    second = fleet.condition("Ready")
    assert first is not None and second is not None
    assert first.status == second.status == "Unknown"
    assert second.last_transition_time == first.last_transition_time
    assert second.observed_generation == 2


def test_planning_is_idempotent_in_a_scenario() -> None:
    fleet = promoted_fleet(20)
    for _ in range(6):
        p = fleet.reconcile()
        again = fleet.plan()
        assert again.changes == () and again.events == () and again.status == p.status
        fleet.report()
        fleet.tick(40)


def test_plan_refuses_a_missing_stable_template() -> None:
    fleet = promoted_fleet(4)
    fleet.stable = None
    with pytest.raises(ValueError, match="template of stable revision"):
        fleet.plan()


def test_superseding_a_wide_canary_with_little_budget_still_completes() -> None:
    fleet = promoted_fleet(20, max_unavailable=2)
    v2 = revisions.revision_of(fleet.md.spec)
    for _ in range(12):  # well into the 50 % step
        fleet.reconcile()
        fleet.report()
        fleet.tick(61)
    assert len(fleet.on(v2)) > 2
    fleet.set_spec(rollout.spec(version="3.0.0", max_unavailable=2))
    fleet.run(rounds=200)
    assert fleet.status.phase == "Healthy"
    assert fleet.on(revisions.revision_of(fleet.md.spec)) == sorted(fleet.devices)


def test_a_canary_that_went_silent_after_a_healthy_verdict_fails_the_analysis() -> None:
    fleet = promoted_fleet(20, deadline=120)
    new = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    fleet.report()
    fleet.reconcile()
    assert fleet.status.current_step_index == 1
    fleet.tick(200)  # no reports since: the verdicts are older than three health windows
    p = fleet.reconcile()
    assert p.status.phase == "RolledBack"
    message = (fleet.condition("Ready") or pytest.fail("no Ready")).message
    canaries = sorted(name for name, revs in fleet.history.items() if new in revs)
    assert "0/2 updated devices healthy" in message
    assert f"no verdict: {', '.join(canaries)}" in message


ANALYSIS_STEPS = [{"setWeight": 50}, {"analysis": {"durationSeconds": 60, "minSamples": 500}}, {"setWeight": 100}]


@pytest.mark.parametrize(
    ("healthy", "unhealthy", "silent", "samples", "elapsed", "phase", "step"),
    [
        (10, 0, 0, 60, 61, "Progressing", 2),  # window over, 600 samples, 100 % healthy: next step
        (10, 0, 0, 60, 30, "Progressing", 1),  # window still open
        (10, 0, 0, 40, 61, "Progressing", 1),  # 400 < 500 samples: keep waiting
        (8, 2, 0, 60, 61, "Progressing", 2),  # 80 % healthy meets the 0.8 threshold; 2 failures are allowed
        (7, 3, 0, 60, 1, "RolledBack", None),  # 3 failures of 10 exceed what 0.8 allows: abort at once
        (9, 0, 1, 60, 61, "Progressing", 2),  # one silent device does not block a 90 % healthy canary
        (7, 0, 3, 60, 61, "Progressing", 1),  # 70 % healthy, 3 silent: wait for the deadline
        (7, 0, 3, 60, 181, "RolledBack", None),  # past window + progressDeadlineSeconds: silence is failure
    ],
)
def test_analysis_verdicts(
    healthy: int, unhealthy: int, silent: int, samples: int, elapsed: int, phase: str, step: int | None
) -> None:
    fleet = promoted_fleet(20, steps=ANALYSIS_STEPS, max_unavailable=20, deadline=120)
    new = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    fleet.report()
    fleet.reconcile()
    canaries = fleet.on(new)
    assert fleet.status.current_step_index == 1 and len(canaries) == 10
    verdicts = ["Healthy"] * healthy + ["Unhealthy"] * unhealthy + ["Silent"] * silent
    by_device = dict(zip(canaries, verdicts, strict=True))
    fleet.report(lambda d, r: by_device[d] if r == new else "Healthy", samples=samples)
    fleet.tick(elapsed)
    p = fleet.reconcile()
    assert (p.status.phase, p.status.current_step_index) == (phase, step)
    if phase == "RolledBack":
        assert fleet.on(new) == []  # maxUnavailable 20 lets every canary return at once
        assert p.status.aborted_revision == new
