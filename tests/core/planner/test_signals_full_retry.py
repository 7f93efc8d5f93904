"""``promote-full`` and ``retry``: the two manual signals that ``kubectl argo rollouts`` users expect."""

from __future__ import annotations

from edgefleet.core import planner, revisions
from edgefleet.testing import rollout
from edgefleet.testing.rollout import Fleet

STEPS = [
    {"setWeight": 10},
    {"pause": {}},
    {"setWeight": 50},
    {"analysis": {"durationSeconds": 600}},
    {"setWeight": 100},
]


def promoted(n: int = 20) -> Fleet:
    fleet = Fleet.new(rollout.spec(steps=STEPS), rollout.layout(n))
    fleet.run()
    assert fleet.status.phase == "Healthy"
    fleet.set_spec(rollout.spec(version="2.0.0", steps=STEPS))
    return fleet


def test_promote_full_skips_to_the_last_step_once_and_completes_within_max_unavailable() -> None:
    fleet = promoted()
    new = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    fleet.report()
    fleet.reconcile()
    assert fleet.status.phase == "Paused" and fleet.status.current_step == 2
    fleet.annotate(planner.ANNOTATION_PROMOTE_FULL, "0.0.1-stale")  # names another revision: ignored
    assert fleet.reconcile().status.current_step == 2
    fleet.annotate(planner.ANNOTATION_PROMOTE_FULL, new)
    p = fleet.reconcile()
    assert p.status.current_step == 5 and p.status.current_step_index == 4
    assert [e.reason for e in p.events].count("PromotedFully") == 1
    assert fleet.unavailable() <= 5  # maxUnavailable 25 % of 20 still holds
    again = fleet.reconcile()
    assert "PromotedFully" not in [e.reason for e in again.events]
    fleet.run()
    assert fleet.status.phase == "Healthy" and fleet.status.stable_revision == new


def test_retry_rolls_an_aborted_revision_out_again_once_per_token() -> None:
    fleet = promoted()
    new = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    fleet.report(lambda _d, r: "Unhealthy" if r == new else "Healthy")
    assert fleet.reconcile().status.aborted_revision == new
    fleet.run()
    assert fleet.status.phase == "RolledBack"
    fleet.annotate(planner.ANNOTATION_RETRY, f"{new}/1")
    p = fleet.reconcile()
    assert p.status.aborted_revision is None and p.status.canary_revision == new
    assert p.status.current_step == 1 and p.status.last_retry == f"{new}/1"
    assert "RolloutRetried" in [e.reason for e in p.events]
    # It fails again: the same token does not retry a second time.
    fleet.report(lambda _d, r: "Unhealthy" if r == new else "Healthy")
    assert fleet.reconcile().status.aborted_revision == new
    fleet.run()
    assert fleet.status.phase == "RolledBack" and fleet.status.canary_revision is None
    # A new token does.
    fleet.annotate(planner.ANNOTATION_RETRY, f"{new}/2")
    assert fleet.reconcile().status.canary_revision == new


def test_retry_naming_another_revision_is_ignored() -> None:
    fleet = promoted()
    new = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    fleet.report(lambda _d, r: "Unhealthy" if r == new else "Healthy")
    fleet.reconcile()
    fleet.annotate(planner.ANNOTATION_RETRY, "9.9.9-0000000000/1")
    assert fleet.reconcile().status.aborted_revision == new
