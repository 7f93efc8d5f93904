"""The pure parts of ``edgefleet status`` and ``edgefleet rollout``: views and the annotations they write."""

from __future__ import annotations

import pathlib

import pytest
from rich.console import Console

from edgefleet.cli import rollout, status
from edgefleet.core import planner, revisions
from edgefleet.testing import rollout as sim

STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]


def paused_fleet() -> sim.Fleet:
    fleet = sim.Fleet.new(sim.spec(steps=STEPS, max_unavailable=10), sim.layout(10))
    fleet.run()
    fleet.set_spec(sim.spec(version="2.0.0", steps=STEPS, max_unavailable=10))
    fleet.run(rounds=5)
    assert fleet.status.phase == "Paused"
    return fleet


def test_steps_view_marks_done_current_and_pending() -> None:
    fleet = paused_fleet()
    assert [s["state"] for s in rollout.steps_view(fleet.md)] == ["done", "current", "pending"]
    assert rollout.steps_view(fleet.md)[1]["step"] == "pause until promoted"


def test_signals_name_the_revision_and_step_they_act_on() -> None:
    fleet = paused_fleet()
    canary = revisions.revision_of(fleet.md.spec)
    assert rollout.signal_for("promote", fleet.md) == {planner.ANNOTATION_PROMOTE: f"{canary}/1"}
    assert rollout.signal_for("abort", fleet.md) == {planner.ANNOTATION_ABORT: canary}
    assert rollout.signal_for("pause", fleet.md) == {planner.ANNOTATION_PAUSED: "true"}
    assert rollout.signal_for("resume", fleet.md) == {planner.ANNOTATION_PAUSED: None}
    # What the CLI writes is what the planner obeys.
    fleet.annotate(planner.ANNOTATION_PROMOTE, rollout.signal_for("promote", fleet.md)[planner.ANNOTATION_PROMOTE])
    assert fleet.reconcile().status.current_step_index == 2


def test_promote_without_a_rollout_is_refused() -> None:
    fleet = sim.Fleet.new(sim.spec(), sim.layout(3))
    fleet.run()
    with pytest.raises(SystemExit, match="no rollout in progress"):
        rollout.signal_for("promote", fleet.md)


def test_summary_and_device_rows() -> None:
    fleet = paused_fleet()
    view = status.summary(fleet.md)
    assert view["phase"] == "Paused" and view["step"] == 2 and view["steps"] == 3
    assert view["devices"]["updated"] == 2 and view["stepDescription"] == "pause until promoted"
    rows = status.device_rows(fleet.md, list(fleet.devices.values()))
    roles = [r["role"] for r in rows]
    assert roles.count("canary") == 2 and roles.count("stable") == 8
    assert all(r["verdict"] == "Healthy" for r in rows)
    # Rendering works for both views (rich renderables, no exceptions on real data).
    status.deployments_table([view])
    status.detail(view, rows)
    rollout.progress(fleet.md)


def test_status_and_rollout_status_show_reachable_and_unreachable_devices() -> None:
    fleet = sim.Fleet.new(sim.spec(steps=STEPS, max_unavailable=10), sim.layout(10)).with_leases(60)
    fleet.run()
    fleet.power_off("dev-03")
    fleet.tick(61)
    fleet.reconcile()
    view = status.summary(fleet.md)
    assert view["reachability"]["reachable"] == 9 and view["reachability"]["unreachable"] == 1
    rows = {r["device"]: r for r in status.device_rows(fleet.md, list(fleet.devices.values()))}
    assert rows["dev-03"]["unreachable"]["reason"] == "LeaseExpired" and rows["dev-04"]["unreachable"] is None
    line = status.reachability_line(view["reachability"])
    assert line.startswith("9 reachable, 1 unreachable (dev-03 LeaseExpired since 2026-01-05T10:")
    console = Console(width=240, record=True)
    console.print(
        status.deployments_table([view]), status.detail(view, list(rows.values())), rollout.progress(fleet.md)
    )
    text = console.export_text()
    assert "UNREACHABLE" in text and "dev-03 LeaseExpired since" in text and "Active (unreachable)" in text
    assert text.count("9 reachable, 1 unreachable") == 2  # the detail and the rollout status


def test_commands_report_missing_credentials_as_an_error_not_a_traceback(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgefleet.cli import main

    missing = str(tmp_path / "no-kubeconfig")
    assert main.main(["status", "--kubeconfig", missing]) == 1
    assert main.main(["rollout", "abort", "weld", "--kubeconfig", missing]) == 1
    err = capsys.readouterr().err
    assert err.count("error: no Kubernetes credentials") == 2


def canary_on_set_weight() -> sim.Fleet:
    fleet = sim.Fleet.new(sim.spec(steps=[{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]), sim.layout(10))
    fleet.run()
    fleet.set_spec(sim.spec(version="2.0.0", steps=[{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]))
    fleet.reconcile()
    assert fleet.status.current_step == 1 and fleet.status.canary_revision is not None
    return fleet


def test_promote_refuses_where_it_cannot_act_and_says_what_would() -> None:
    fleet = canary_on_set_weight()
    with pytest.raises(SystemExit, match=r"step 1/3 \(setWeight 20%\) completes by itself.*--full"):
        rollout.signal_for("promote", fleet.md)
    canary = fleet.status.canary_revision
    assert rollout.signal_for("promote", fleet.md, full=True) == {planner.ANNOTATION_PROMOTE_FULL: canary}
    fleet.annotate(planner.ANNOTATION_PAUSED, "true")
    with pytest.raises(SystemExit, match="cannot promote while it is held by annotation"):
        rollout.signal_for("promote", fleet.md, full=True)
    assert rollout.signal_for("undo", fleet.md) == {planner.ANNOTATION_ABORT: canary}


def test_retry_and_undo_signals() -> None:
    fleet = sim.Fleet.new(sim.spec(), sim.layout(3))
    fleet.run()
    with pytest.raises(SystemExit, match="no aborted revision"):
        rollout.signal_for("retry", fleet.md)
    with pytest.raises(SystemExit, match="revert the change in Git"):
        rollout.signal_for("undo", fleet.md)
    fleet.set_spec(sim.spec(version="2.0.0"))
    fleet.reconcile()
    new = fleet.status.canary_revision
    fleet.annotate(planner.ANNOTATION_ABORT, new)
    fleet.reconcile()
    signal = rollout.signal_for("retry", fleet.md)
    assert signal[planner.ANNOTATION_ABORT] is None and str(signal[planner.ANNOTATION_RETRY]).startswith(f"{new}/")
    for key, value in signal.items():
        fleet.annotate(key, value)
    assert fleet.reconcile().status.canary_revision == new


def test_plain_tables_keep_whole_cells_in_a_narrow_pipe() -> None:
    from edgefleet.cli import tables

    fleet = paused_fleet()
    view = status.summary(fleet.md)
    text = tables.plain(tables.shown(status.DEPLOYMENT_COLUMNS, {"all_namespaces": True}), [view, view])
    header, *rows = text.splitlines()
    assert header.split()[:3] == ["NAMESPACE", "NAME", "MODEL"] and "STABLE" in header and "CANARY" in header
    assert len(rows) == 2 and view["canaryRevision"] in rows[0] and "2/3" in rows[0]
    assert "NAMESPACE" not in tables.plain(tables.shown(status.DEPLOYMENT_COLUMNS, {}), [view])


def test_every_verb_has_help() -> None:
    import argparse

    from edgefleet.cli import main

    def walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
        missing = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                for name, sub in action.choices.items():
                    if not helps.get(name):
                        missing.append(f"{path} {name}")
                    missing += walk(sub, f"{path} {name}")
        return missing

    assert walk(main.build_parser(), "edgefleet") == []
