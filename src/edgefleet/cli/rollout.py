"""``edgefleet rollout status|pause|resume|promote|abort NAME``: follow and steer a rollout.

Steering writes annotations the operator reads on every reconcile; each names what it acts on, so repeating a command,
or the operator restarting, never acts twice (see :mod:`edgefleet.core.planner`):

* ``pause`` sets ``edgefleet.io/paused: "true"``; ``resume`` removes it (``spec.paused`` in Git still wins);
* ``promote`` sets ``edgefleet.io/promote: <canaryRevision>/<currentStepIndex>``, completing the current pause or
  analysis step;
* ``abort`` sets ``edgefleet.io/abort: <canaryRevision>``: every device returns to stable and that revision is not
  retried until the spec changes.

``rollout status`` shows the steps with the current one marked and the device counts; with ``--watch`` it follows the
rollout until it is Healthy (exit 0) or RolledBack, Degraded or Stalled (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from edgefleet.api import modeldeployment
from edgefleet.cli import cluster, status
from edgefleet.core import planner

DONE = ("Healthy",)
FAILED = ("RolledBack", "Degraded", "Stalled")


def steps_view(md: modeldeployment.ModelDeployment) -> list[dict[str, Any]]:
    """The steps with their state: done, current or pending (pure)."""
    st = md.status or modeldeployment.ModelDeploymentStatus()
    current = st.current_step_index
    out = []
    for i, step in enumerate(md.spec.rollout.steps):
        if st.canary_revision is None:
            state = "done" if st.phase == "Healthy" else "-"
        elif current is not None and i < current:
            state = "done"
        elif i == current:
            state = "current"
        else:
            state = "pending"
        out.append({"index": i, "step": planner.describe_step(step), "state": state})
    return out


def progress(md: modeldeployment.ModelDeployment) -> RenderableType:
    view = status.summary(md)
    table = Table(box=box.SIMPLE, title=f"Rollout of {view['namespace']}/{view['name']}: {view['version']}")
    table.add_column("#")
    table.add_column("STEP")
    table.add_column("STATE")
    for step in steps_view(md):
        marker = {"done": "[green]done[/green]", "current": "[cyan]> current[/cyan]"}.get(step["state"], step["state"])
        table.add_row(str(step["index"] + 1), step["step"], marker)
    counts = view["devices"]
    targeted = max(1, counts.get("targeted", 0))
    bar = ProgressBar(total=targeted, completed=counts.get("updated", 0), width=40)
    line = Table.grid(padding=(0, 1))
    line.add_row(
        status.styled_phase(view["phase"]),
        bar,
        f"{counts.get('updated', 0)}/{counts.get('targeted', 0)} updated, "
        f"{counts.get('healthy', 0)} healthy, {counts.get('failed', 0)} failed",
    )
    line.add_row("", "", status.reachability_line(view.get("reachability") or {}))
    return Group(table, line, view["message"] or "")


async def _status(cl: cluster.Cluster, args: argparse.Namespace) -> int:
    console = Console()
    md = await cl.deployment(args.name)

    def data(current: modeldeployment.ModelDeployment) -> dict[str, Any]:
        return {**status.summary(current), "stepStates": steps_view(current)}

    if not args.watch:
        if args.output == "json":
            print(json.dumps(data(md), indent=2, sort_keys=True))
        else:
            console.print(progress(md))
        return 1 if (md.status and md.status.phase in FAILED) else 0
    with Live(progress(md), console=console, refresh_per_second=4) as live:
        while True:
            phase = md.status.phase if md.status else None
            if args.output == "json":
                print(json.dumps(data(md), sort_keys=True), flush=True)
            if phase in DONE + FAILED and (md.status and md.status.canary_revision is None):
                return 0 if phase in DONE else 1
            await asyncio.sleep(args.interval)
            md = await cl.deployment(args.name)
            live.update(progress(md))


def signal_for(action: str, md: modeldeployment.ModelDeployment) -> dict[str, str | None]:
    """The annotations that ask the operator for ``action`` (pure); SystemExit when it makes no sense now."""
    st = md.status or modeldeployment.ModelDeploymentStatus()
    if action == "pause":
        return {planner.ANNOTATION_PAUSED: "true"}
    if action == "resume":
        return {planner.ANNOTATION_PAUSED: None}
    if st.canary_revision is None:
        raise SystemExit(
            f"error: {md.metadata.name} has no rollout in progress (phase {st.phase}); nothing to {action}"
        )
    if action == "promote":
        return {planner.ANNOTATION_PROMOTE: f"{st.canary_revision}/{st.current_step_index}"}
    return {planner.ANNOTATION_ABORT: st.canary_revision}


async def _steer(cl: cluster.Cluster, args: argparse.Namespace) -> int:
    md = await cl.deployment(args.name)
    annotations = signal_for(args.action, md)
    await cl.annotate(args.name, annotations)
    note = ""
    if args.action == "resume" and md.spec.paused:
        note = " (spec.paused is still true in the manifest; change it in Git to resume)"
    verb = {"pause": "Paused", "resume": "Resumed", "promote": "Promoted", "abort": "Aborted"}[args.action]
    print(f"{verb} rollout of ModelDeployment {cl.namespace}/{args.name}{note}", file=sys.stderr)
    return 0


async def _run(cl: cluster.Cluster, args: argparse.Namespace) -> int:
    if args.action == "status":
        return await _status(cl, args)
    return await _steer(cl, args)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``edgefleet rollout``."""
    return cluster.run(_run, args)


def register(subparsers: Any) -> None:
    """Add ``rollout`` to the ``edgefleet`` command."""
    parser = subparsers.add_parser("rollout", help="follow or steer a rollout")
    parser.add_argument("action", choices=("status", "pause", "resume", "promote", "abort"))
    parser.add_argument("name", help="the ModelDeployment")
    parser.add_argument("-w", "--watch", action="store_true", help="rollout status: follow until it ends")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --watch")
    cluster.add_cluster_arguments(parser)
    parser.set_defaults(func=run)


__all__ = ["progress", "register", "run", "signal_for", "steps_view"]
