"""Memory, signals and the pass: the named status fields round-trip, signals name what they act on."""

from __future__ import annotations

import datetime as dt

import pytest

from edgefleet.api import common, modeldeployment
from edgefleet.core.planner import state
from edgefleet.testing import rollout as sim


def test_the_rollout_state_round_trips_through_its_status_fields() -> None:
    status = modeldeployment.ModelDeploymentStatus(
        stable_revision="1.0.0-a",
        canary_revision="2.0.0-b",
        aborted_revision=None,
        current_step_index=2,
        current_step=3,  # derived from the index: 1-based, as the conditions say it
        step_started_at=sim.T0,
        rollout_failure=modeldeployment.RolloutFailure(revision="0.9.0-c", message="x"),
        last_attempted_revision="2.0.0-b",
        compile_failure=None,
    )
    memory = state.RolloutState.of(status)
    assert status.model_copy(update=memory.status_fields()) == status
    assert memory.without_canary() == state.RolloutState(
        stable_revision="1.0.0-a",
        rollout_failure=status.rollout_failure,
        last_attempted_revision="2.0.0-b",
    )


@pytest.mark.parametrize(
    ("paused", "annotations", "held"),
    [
        (False, {}, ""),
        (True, {}, "spec.paused is true"),
        (False, {state.ANNOTATION_PAUSED: "true"}, "annotation edgefleet.io/paused is true"),
        (False, {state.ANNOTATION_PAUSED: "yes"}, ""),
        (True, {state.ANNOTATION_PAUSED: "true"}, "spec.paused is true"),
    ],
)
def test_signals(paused: bool, annotations: dict[str, str], held: str) -> None:
    md = modeldeployment.ModelDeployment(
        metadata=common.ObjectMeta(
            name="weld", annotations={**annotations, state.ANNOTATION_PROMOTE: "2.0.0-b/1", state.ANNOTATION_ABORT: "x"}
        ),
        spec=sim.spec(paused=paused),
    )
    signals = state.RolloutSignals.of(md)
    assert signals.held == held
    assert signals.promotes("2.0.0-b", 1) and not signals.promotes("2.0.0-b", 2) and signals.aborts("x")


def test_the_pass_knows_the_templates_it_was_given_and_waits_for_the_next_window() -> None:
    spec = sim.spec(windows=[{"days": ["Sat"], "start": "22:00", "end": "23:00"}])
    md = sim.Fleet.new(spec, []).md
    stable, candidate = sim.template(sim.spec(version="0.9.0")), sim.template(spec)
    run = state.PlanningPass.of(md, sim.layout(2), candidate, stable, sim.T0)
    assert run.template(candidate.revision) is candidate and run.template(stable.revision) is stable
    assert run.template("other") is None and run.template(None) is None
    assert [d.name for d in run.targeted] == ["dev-00", "dev-01"]
    saturday = dt.datetime(2026, 1, 10, 22, tzinfo=dt.UTC)
    assert run.device_wait() == (saturday - sim.T0).total_seconds()
