"""The rollout panel (steps, revisions, events) and the convergence series of the dashboard."""

from __future__ import annotations

import datetime as dt

from edgefleet.api import common, modeldeployment
from edgefleet.core import fleetmap, rolloutview
from edgefleet.testing import rollout

T0 = rollout.T0


def deployment(status: modeldeployment.ModelDeploymentStatus | None) -> modeldeployment.ModelDeployment:
    return modeldeployment.ModelDeployment(
        metadata=common.ObjectMeta(name=rollout.NAME, namespace="plant"), spec=rollout.spec(), status=status
    )


def test_steps_read_done_current_pending_while_a_canary_is_out() -> None:
    status = modeldeployment.ModelDeploymentStatus(stable_revision="a", canary_revision="b", current_step_index=2)
    md = deployment(status)
    assert [s["state"] for s in rolloutview.steps(md)] == ["done", "done", "current", "pending"]
    assert [s["description"] for s in rolloutview.steps(md)][1].startswith("analysis")
    settled = deployment(modeldeployment.ModelDeploymentStatus(stable_revision="a", current_step_index=3))
    assert {s["state"] for s in rolloutview.steps(settled)} == {"done"}
    assert {s["state"] for s in rolloutview.steps(deployment(None))} == {"pending"}


def test_the_panel_carries_revisions_and_the_newest_events_first() -> None:
    status = modeldeployment.ModelDeploymentStatus(
        stable_revision="1.0.0-a", canary_revision="1.1.0-b", current_step_index=0, phase="Progressing"
    )
    events = [
        rolloutview.EventRecord("Normal", f"R{i}", f"message {i}", T0 + dt.timedelta(seconds=i)) for i in range(40)
    ]
    panel = rolloutview.deployment(deployment(status), events)
    assert (panel["id"], panel["phase"], panel["canaryRevision"]) == ("plant/weld", "Progressing", "1.1.0-b")
    assert len(panel["events"]) == rolloutview.MAX_EVENTS and panel["events"][0]["reason"] == "R39"


def test_running_prefers_a_deployment_with_a_canary_out() -> None:
    quiet = deployment(modeldeployment.ModelDeploymentStatus(stable_revision="a"))
    busy = deployment(modeldeployment.ModelDeploymentStatus(stable_revision="a", canary_revision="b"))
    busy = busy.model_copy(update={"metadata": common.ObjectMeta(name="zz", namespace="plant")})
    assert rolloutview.running([quiet, busy]) is busy
    assert rolloutview.running([quiet]) is quiet
    assert rolloutview.running([]) is None


def test_a_point_counts_the_deployments_models_and_offline_devices() -> None:
    status = modeldeployment.ModelDeploymentStatus(stable_revision="a", canary_revision="b", current_step_index=1)
    md = deployment(status)

    def t(name: str, state: fleetmap.TileState, online: bool = True, deployment: str = rollout.NAME) -> fleetmap.Tile:
        model = fleetmap.ModelTile(rollout.MODEL, deployment, state, "")
        return fleetmap.Tile("plant", name, "s", "l", "x86", state, "", (model,), online)

    tiles = [t("a", "canary"), t("b", "stable"), t("c", "stable", online=False), t("d", "canary", deployment="other")]
    p = rolloutview.point(md, tiles, T0)
    assert (p.step, p.canary, p.counts["canary"], p.counts["stable"], p.counts["offline"]) == (1, "b", 1, 1, 1)


def test_history_records_changes_only_and_stays_bounded() -> None:
    h = rolloutview.History(limit=50)
    counts = {"canary": 0}
    assert h.add(rolloutview.Point(T0, 0, "b", dict(counts)))
    assert not h.add(rolloutview.Point(T0 + dt.timedelta(seconds=1), 0, "b", dict(counts)))  # nothing changed
    for i in range(1, 500):
        h.add(rolloutview.Point(T0 + dt.timedelta(seconds=i), 0, "b", {"canary": i}))
    assert len(h.points) <= 50
    assert h.points[0].at == T0 and h.points[-1].counts["canary"] == 499  # first and newest kept
    assert [p.at for p in h.points] == sorted(p.at for p in h.points)
