"""The planner's memory is named status fields, never conditions or the phase read back (STYLE rule 23)."""

from __future__ import annotations

from edgefleet.api import modeldeployment
from edgefleet.core import revisions
from edgefleet.testing import rollout as sim
from edgefleet.testing.rollout import Fleet


def promoted(**kwargs: object) -> Fleet:
    fleet = Fleet.new(sim.spec(**kwargs), sim.layout(20))  # type: ignore[arg-type]
    fleet.run()
    fleet.set_spec(sim.spec(version="2.0.0", **kwargs))  # type: ignore[arg-type]
    return fleet


def forget_outputs(fleet: Fleet) -> None:
    """Wipe what the planner writes as output only: the next pass must not depend on it."""
    fleet.md = fleet.md.model_copy(update={"status": fleet.status.model_copy(update={"conditions": [], "phase": None})})


def test_the_evidence_of_an_abort_is_kept_in_rollout_failure() -> None:
    fleet = promoted()
    new = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    fleet.report(lambda _d, r: "Unhealthy" if r == new else "Healthy")
    fleet.reconcile()
    failure = fleet.status.rollout_failure
    assert failure is not None and failure.revision == new == fleet.status.aborted_revision
    assert failure.message.startswith(f"Rolled back to stable revision {fleet.status.stable_revision}")
    forget_outputs(fleet)
    fleet.reconcile()
    ready = fleet.condition("Ready")
    assert ready is not None and ready.reason == "RolledBack" and ready.message == failure.message
    # A new spec lifts the ban and drops the evidence with it.
    fleet.set_spec(sim.spec(version="2.0.1"))
    fleet.reconcile()
    assert fleet.status.aborted_revision is None and fleet.status.rollout_failure is None


def test_a_degraded_rollout_announces_its_failure_once_whatever_the_phase_says() -> None:
    fleet = promoted(automatic=False)
    new = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()
    fleet.report(lambda _d, r: "Unhealthy" if r == new else "Healthy")
    assert [e.reason for e in fleet.reconcile().events] == ["RolloutFailed"]
    assert fleet.status.rollout_failure is not None and fleet.status.rollout_failure.revision == new
    forget_outputs(fleet)
    assert fleet.reconcile().events == ()
    assert fleet.status.phase == "Degraded"
    # The canary recovers: the failure is no longer remembered, and a new failure is announced again.
    fleet.report()
    fleet.reconcile()
    assert fleet.status.phase == "Progressing" and fleet.status.rollout_failure is None
    fleet.report(lambda _d, r: "Unhealthy" if r == new else "Healthy")
    assert [e.reason for e in fleet.reconcile().events] == ["RolloutFailed"]


def compile_failed(fleet: Fleet, generation: int) -> None:
    failure = modeldeployment.CompileFailure(generation=generation, reason="AccuracyGateFailed", message="int8 drop")
    update = {"last_attempted_revision": revisions.revision_of(fleet.md.spec), "compile_failure": failure}
    fleet.md = fleet.md.model_copy(update={"status": fleet.status.model_copy(update=update)})


def test_a_recorded_compile_failure_of_this_generation_stalls_instead_of_compiling() -> None:
    fleet = promoted()
    fleet.compiled = False
    asked = fleet.reconcile()
    assert asked.compile == revisions.revision_of(fleet.md.spec) and fleet.status.phase == "Compiling"
    assert fleet.status.last_attempted_revision == asked.compile
    compile_failed(fleet, generation=2)
    stalled = fleet.reconcile()
    assert stalled.compile is None and stalled.requeue_after is None
    assert fleet.status.phase == "Stalled" and fleet.status.compile_failure is not None
    ready, stalled_condition = fleet.condition("Ready"), fleet.condition("Stalled")
    assert ready is not None and (ready.status, ready.reason, ready.message) == (
        "False",
        "AccuracyGateFailed",
        "int8 drop",
    )
    assert stalled_condition is not None and fleet.condition("Reconciling") is None
    assert fleet.on(fleet.status.stable_revision) == sorted(fleet.devices), "devices stay on stable"


def test_a_compile_failure_of_another_generation_is_forgotten_and_compiled_again() -> None:
    fleet = promoted()
    fleet.compiled = False
    compile_failed(fleet, generation=1)
    p = fleet.reconcile()
    assert p.compile is not None and fleet.status.phase == "Compiling" and fleet.status.compile_failure is None


def test_the_planner_leaves_observed_generation_to_the_reconcile() -> None:
    fleet = Fleet.new(sim.spec(), sim.layout(4))
    assert fleet.reconcile().status.observed_generation is None
