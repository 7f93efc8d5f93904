"""The steps: how they read, the canary selection of setWeight, and where a walk stops."""

from __future__ import annotations

import dataclasses

import pytest

from edgefleet.api import modeldeployment
from edgefleet.core import revisions
from edgefleet.core.planner import state, steps
from edgefleet.testing import rollout as sim
from edgefleet.testing.rollout import Fleet


@pytest.mark.parametrize(
    ("step", "text"),
    [
        ({"setWeight": 25}, "setWeight 25%"),
        ({"pause": {}}, "pause until promoted"),
        ({"pause": {"durationSeconds": 300}}, "pause 300s"),
        ({"analysis": {"durationSeconds": 60, "minSamples": 100}}, "analysis 60s, 100 samples"),
    ],
)
def test_describe_step(step: dict[str, object], text: str) -> None:
    assert steps.describe_step(modeldeployment.RolloutStep.model_validate(step)) == text


def pass_on(fleet: Fleet) -> tuple[state.PlanningPass, state.RolloutState]:
    """A pass over ``fleet`` whose spec asks for a new revision, with the canary started at step 0."""
    candidate = sim.template(fleet.md.spec)
    run = state.PlanningPass.of(fleet.md, list(fleet.devices.values()), candidate, fleet.stable, fleet.now)
    assert fleet.md.status is not None
    memory = dataclasses.replace(
        state.RolloutState.of(fleet.md.status), canary_revision=candidate.revision, step=0, started=fleet.now
    )
    return run, memory


def stable_fleet(n: int, lines: int, **spec: object) -> Fleet:
    fleet = Fleet.new(sim.spec(max_unavailable="100%", **spec), sim.layout(n, sites=1, lines=lines))  # type: ignore[arg-type]
    fleet.run()
    fleet.set_spec(sim.spec(version="2.0.0", max_unavailable="100%", **spec))  # type: ignore[arg-type]
    return fleet


@pytest.mark.parametrize(
    ("n", "lines", "weight", "canaries"),
    [
        (20, 4, 10, 2),  # 10 % of 20
        (20, 4, 50, 10),
        (4, 4, 50, 0),  # one device per line: every device keeps its line on stable below 100 %
        (6, 2, 90, 4),  # capped by the line keepers
        (6, 2, 100, 6),
    ],
)
def test_set_weight_picks_the_canary_share_and_keeps_one_device_per_line(
    n: int, lines: int, weight: int, canaries: int
) -> None:
    fleet = stable_fleet(n, lines)
    run, memory = pass_on(fleet)
    steps.set_weight(run, memory, weight)
    revision = revisions.revision_of(fleet.md.spec)
    chosen = run.ledger.on(revision, run.targeted)
    assert len(chosen) == canaries
    if weight < 100:
        for line in range(lines):
            on_line = [d for d in run.targeted if d.labels["edgefleet.io/line"] == f"line-{line}"]
            assert any(d not in chosen for d in on_line), f"line-{line} is all canary"


def test_set_weight_completes_only_when_the_canaries_run_it() -> None:
    fleet = stable_fleet(20, 4)
    run, memory = pass_on(fleet)
    assert steps.set_weight(run, memory, 10) is False
    fleet.apply(fleet.plan())
    fleet.report()
    run, memory = pass_on(fleet)
    memory = dataclasses.replace(memory, canary_revision=revisions.revision_of(fleet.md.spec))
    assert steps.set_weight(run, memory, 10) is True


@pytest.mark.parametrize(
    ("spec_steps", "stops"),
    [
        ([{"setWeight": 10}, {"setWeight": 100}], steps.StepsWaiting),  # the canary is not active yet
        ([{"pause": {"durationSeconds": 0}}, {"setWeight": 100}], steps.StepsWaiting),
        ([{"pause": {}}, {"setWeight": 100}], steps.StepsWaiting),
    ],
)
def test_walk_stops_at_the_first_incomplete_step(spec_steps: list[dict[str, object]], stops: type) -> None:
    fleet = stable_fleet(10, 2, steps=spec_steps)
    run, memory = pass_on(fleet)
    walked = steps.walk(run, memory)
    assert isinstance(walked, stops)
    assert isinstance(walked, steps.StepsWaiting)
    expected_step = 1 if spec_steps[0].get("pause") == {"durationSeconds": 0} else 0
    assert walked.rollout.step == expected_step
    assert walked.summary.phase == ("Paused" if spec_steps[0].get("pause") == {} else "Progressing")


def test_walk_halts_on_too_many_failures_and_completes_when_every_step_is_done() -> None:
    fleet = stable_fleet(10, 2, steps=[{"setWeight": 100}])
    new = revisions.revision_of(fleet.md.spec)
    fleet.reconcile()  # starts the canary on every device
    fleet.report(lambda _d, r: "Unhealthy" if r == new else "Healthy")
    run, memory = pass_on(fleet)
    halted = steps.walk(run, memory)
    assert isinstance(halted, steps.StepsHalted) and halted.cause == "too many updated devices failed"
    fleet.report()
    run, memory = pass_on(fleet)
    completed = steps.walk(run, memory)
    assert isinstance(completed, steps.StepsCompleted) and completed.rollout.step == 1
    assert [e.reason for e in run.events] == ["StepCompleted"]
