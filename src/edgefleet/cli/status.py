"""``edgefleet status [NAME]``: ModelDeployments at a glance, or one of them with its devices.

Without NAME, one row per deployment (phase, step, device counts, Ready message). With NAME, the deployment's
conditions, compiled artifacts and one row per targeted device (its desired and active revision and health verdict).
``--watch`` redraws every ``--interval`` seconds; ``-o json`` prints the same data as JSON. The view functions
(:func:`summary`, :func:`device_rows`) are pure and shared with ``edgefleet rollout``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table

from edgefleet.api import common, edgedevice, modeldeployment
from edgefleet.cli import cluster
from edgefleet.core import conditions, planner

PHASE_STYLE = {
    "Healthy": "green",
    "Progressing": "cyan",
    "Compiling": "cyan",
    "Paused": "yellow",
    "Degraded": "red",
    "RolledBack": "red",
    "Stalled": "red",
}


def summary(md: modeldeployment.ModelDeployment) -> dict[str, Any]:
    """One deployment as plain data (pure)."""
    status = md.status or modeldeployment.ModelDeploymentStatus()
    ready = conditions.find(status.conditions, conditions.READY)
    steps = md.spec.rollout.steps
    step = status.current_step_index
    return {
        "namespace": md.metadata.namespace,
        "name": md.metadata.name,
        "model": md.spec.model.name,
        "version": md.spec.model.version,
        "phase": status.phase,
        "ready": ready.status if ready else None,
        "reason": ready.reason if ready else None,
        "message": ready.message if ready else None,
        "step": None if step is None else step + 1,
        "steps": len(steps),
        "stepDescription": planner.describe_step(steps[step]) if step is not None and step < len(steps) else None,
        "stepStartedAt": status.step_started_at.isoformat() if status.step_started_at else None,
        "stableRevision": status.stable_revision,
        "canaryRevision": status.canary_revision,
        "abortedRevision": status.aborted_revision,
        "devices": status.devices.to_wire(),
        "reachability": status.reachability.to_wire(),
        "conditions": [c.to_wire() for c in status.conditions],
        "artifacts": [a.to_wire() for a in status.artifacts],
    }


def device_rows(md: modeldeployment.ModelDeployment, devices: Sequence[edgedevice.EdgeDevice]) -> list[dict[str, Any]]:
    """One row per device the deployment targets or still has an entry on (pure)."""
    status = md.status or modeldeployment.ModelDeploymentStatus()
    unreachable = {d.name: d for d in status.reachability.devices}
    rows = []
    for device in sorted(devices, key=lambda d: d.metadata.name):
        labels = device.metadata.labels or {}
        owned = planner.owned_entries(device, md.metadata.name)
        if not owned and not md.spec.selector.matches(labels):
            continue
        entry = owned[0] if owned else None
        reports = device.status.models if device.status is not None else []
        report = next((r for r in reports if entry is not None and r.name == entry.name), None)
        desired = entry.revision if entry is not None else None
        if desired is None:
            role = "-"
        elif desired == status.canary_revision:
            role = "canary"
        elif desired == status.stable_revision:
            role = "stable"
        else:
            role = "other"
        rows.append(
            {
                "device": device.metadata.name,
                "site": labels.get(common.LABEL_SITE, ""),
                "line": labels.get(common.LABEL_LINE, ""),
                "hardware": labels.get(common.LABEL_HARDWARE_CLASS, ""),
                "role": role,
                "desiredRevision": desired,
                "activeRevision": report.active_revision if report else None,
                "state": report.state if report else None,
                "verdict": report.health.verdict if report and report.health else None,
                "samples": report.health.samples if report and report.health else None,
                "reason": (report.health.reason if report and report.health else None)
                or (report.message if report else None),
                "unreachable": unreachable[device.metadata.name].to_wire()
                if device.metadata.name in unreachable
                else None,
            }
        )
    return rows


def reachability_line(reach: dict[str, Any]) -> str:
    """``18 reachable, 2 unreachable (dev-03 LeaseExpired since ...)`` from ``status.reachability`` (pure).

    >>> reachability_line({"reachable": 3, "unreachable": 1, "devices": [
    ...     {"name": "d1", "reason": "LeaseExpired", "since": "2026-01-05T10:00:00Z"}]})
    '3 reachable, 1 unreachable (d1 LeaseExpired since 2026-01-05T10:00:00Z)'
    """
    line = f"{reach.get('reachable', 0)} reachable, {reach.get('unreachable', 0)} unreachable"
    listed = [f"{d['name']} {d['reason']} since {d.get('since', '?')}" for d in reach.get("devices") or []]
    if listed:
        more = reach.get("unreachable", 0) - len(listed)
        line += f" ({', '.join(listed)}{f' and {more} more' if more > 0 else ''})"
    if reach.get("heldSince"):
        line += f"; rollout held since {reach['heldSince']}"
    return line


def styled_phase(phase: str | None) -> str:
    if phase is None:
        return "-"
    style = PHASE_STYLE.get(phase, "white")
    return f"[{style}]{phase}[/{style}]"


def deployments_table(rows: Sequence[dict[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAVY, title="ModelDeployments")
    for column in (
        "NAME",
        "MODEL",
        "VERSION",
        "PHASE",
        "READY",
        "STEP",
        "UPDATED",
        "HEALTHY",
        "FAILED",
        "UNREACHABLE",
        "MESSAGE",
    ):
        table.add_column(column, overflow="fold")
    for row in rows:
        counts = row["devices"]
        reach = row.get("reachability") or {}
        step = f"{row['step']}/{row['steps']}" if row["step"] else "-"
        table.add_row(
            row["name"],
            row["model"],
            row["version"],
            styled_phase(row["phase"]),
            row["ready"] or "-",
            step,
            f"{counts.get('updated', 0)}/{counts.get('targeted', 0)}",
            str(counts.get("healthy", 0)),
            str(counts.get("failed", 0)),
            str(reach.get("unreachable", 0)),
            (row["message"] or "")[:160],
        )
    return table


def devices_table(rows: Sequence[dict[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE, title="Devices")
    for column in (
        "DEVICE",
        "SITE",
        "LINE",
        "HW",
        "ROLE",
        "DESIRED",
        "ACTIVE",
        "STATE",
        "VERDICT",
        "SAMPLES",
    ):
        table.add_column(column)
    for row in rows:
        verdict = row["verdict"] or "-"
        color = {"Healthy": "green", "Unhealthy": "red"}.get(verdict, "white")
        table.add_row(
            row["device"],
            row["site"],
            row["line"],
            row["hardware"],
            row["role"],
            row["desiredRevision"] or "-",
            row["activeRevision"] or "-",
            (row["state"] or "-") + (" (unreachable)" if row.get("unreachable") else ""),
            f"[{color}]{verdict}[/{color}]",
            str(row["samples"] if row["samples"] is not None else "-"),
        )
    return table


def detail(view: dict[str, Any], rows: Sequence[dict[str, Any]]) -> RenderableType:
    head = Table(box=box.SIMPLE, show_header=False, title=f"ModelDeployment {view['namespace']}/{view['name']}")
    head.add_column("key", style="bold")
    head.add_column("value", overflow="fold")
    step = f"{view['step']}/{view['steps']} ({view['stepDescription']})" if view["step"] else "-"
    for key, value in (
        ("Model", f"{view['model']} {view['version']}"),
        ("Phase", styled_phase(view["phase"])),
        ("Step", step),
        ("Stable", view["stableRevision"] or "-"),
        ("Canary", view["canaryRevision"] or "-"),
        ("Aborted", view["abortedRevision"] or "-"),
        ("Reachable", reachability_line(view.get("reachability") or {})),
    ):
        head.add_row(key, value)
    conds = Table(box=box.SIMPLE, title="Conditions")
    for column in ("TYPE", "STATUS", "REASON", "MESSAGE"):
        conds.add_column(column, overflow="fold")
    for c in view["conditions"]:
        conds.add_row(c["type"], c["status"], c["reason"], c.get("message", ""))
    arts = Table(box=box.SIMPLE, title="Artifacts")
    for column in ("TARGET", "PRECISION", "SIZE", "DIGEST"):
        arts.add_column(column)
    for a in view["artifacts"]:
        arts.add_row(a["target"], a["precision"], str(a["sizeBytes"]), a["digest"][:19])
    return Group(head, conds, arts, devices_table(rows))


async def _collect(cl: cluster.Cluster, name: str | None) -> tuple[Any, RenderableType]:
    if name is None:
        rows = [summary(md) for md in await cl.deployments()]
        return rows, deployments_table(rows)
    md = await cl.deployment(name)
    view = summary(md)
    devices = device_rows(md, await cl.devices())
    return {**view, "deviceRows": devices}, detail(view, devices)


async def _run(cl: cluster.Cluster, args: argparse.Namespace) -> int:
    console = Console()
    data, renderable = await _collect(cl, args.name)
    if not args.watch:
        if args.output == "json":
            print(json.dumps(data, indent=2, sort_keys=True))
        else:
            console.print(renderable)
        return 0
    with Live(renderable, console=console, refresh_per_second=4) as live:
        while True:
            await asyncio.sleep(args.interval)
            data, renderable = await _collect(cl, args.name)
            if args.output == "json":
                print(json.dumps(data, sort_keys=True), flush=True)
            else:
                live.update(renderable)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``edgefleet status``."""
    return cluster.run(_run, args)


def register(subparsers: Any) -> None:
    """Add ``status`` to the ``edgefleet`` command."""
    parser = subparsers.add_parser("status", help="show ModelDeployments (and one deployment's devices)")
    parser.add_argument("name", nargs="?", help="a ModelDeployment to show in detail")
    parser.add_argument("-w", "--watch", action="store_true", help="keep redrawing until interrupted")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between redraws with --watch")
    cluster.add_cluster_arguments(parser)
    parser.set_defaults(func=run)


__all__ = [
    "deployments_table",
    "detail",
    "device_rows",
    "devices_table",
    "reachability_line",
    "register",
    "run",
    "styled_phase",
    "summary",
]
