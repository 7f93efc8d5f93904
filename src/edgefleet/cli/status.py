"""``edgefleet status [NAME]``: ModelDeployments at a glance, or one of them with its devices.

Without NAME, one row per deployment (phase, 1-based step, device counts, stable and canary revisions, Ready
message); ``-A`` lists every namespace. With NAME, the deployment's stable and canary side by side, conditions, compiled
artifacts and one row per targeted device (its desired and active revision and health verdict). On a terminal the
tables are rich; in a pipe or a CI log they are plain aligned text, one line per row (:mod:`edgefleet.cli.tables`).
``--watch`` redraws every ``--interval`` seconds (with NAME until the rollout ends, exit codes in
:mod:`edgefleet.cli.watching`); ``-o json`` prints the same data as JSON. The view functions (:func:`summary`,
:func:`device_rows`) are pure and shared with ``edgefleet rollout``; add a column by appending to
:data:`DEPLOYMENT_COLUMNS`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType

from edgefleet.api import common, edgedevice, modeldeployment
from edgefleet.cli import cluster, tables, watching
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


def _counts(row: tables.Row, key: str) -> int:
    value: int = (row.get("devices") or {}).get(key, 0)
    return value


DEPLOYMENT_COLUMNS: list[tables.Column] = [
    tables.Column("NAMESPACE", lambda r: r["namespace"] or "", when=lambda o: bool(o.get("all_namespaces"))),
    tables.Column("NAME", lambda r: r["name"]),
    tables.Column("MODEL", lambda r: r["model"]),
    tables.Column("VERSION", lambda r: r["version"]),
    tables.Column("PHASE", lambda r: r["phase"] or "", style=lambda r: PHASE_STYLE.get(r["phase"] or "")),
    tables.Column("READY", lambda r: r["ready"] or ""),
    tables.Column("STEP", lambda r: f"{r['step']}/{r['steps']}" if r["step"] else ""),
    tables.Column("UPDATED", lambda r: f"{_counts(r, 'updated')}/{_counts(r, 'targeted')}"),
    tables.Column("HEALTHY", lambda r: str(_counts(r, "healthy"))),
    tables.Column("FAILED", lambda r: str(_counts(r, "failed"))),
    tables.Column("UNREACHABLE", lambda r: str((r.get("reachability") or {}).get("unreachable", 0))),
    tables.Column("STABLE", lambda r: r["stableRevision"] or ""),
    tables.Column("CANARY", lambda r: r["canaryRevision"] or ""),
    tables.Column("MESSAGE", lambda r: r["message"] or "", max_width=160),
]
"""The columns of ``edgefleet status``; append a :class:`~edgefleet.cli.tables.Column` to add one."""

DEVICE_COLUMNS: list[tables.Column] = [
    tables.Column("DEVICE", lambda r: r["device"]),
    tables.Column("SITE", lambda r: r["site"]),
    tables.Column("LINE", lambda r: r["line"]),
    tables.Column("HW", lambda r: r["hardware"]),
    tables.Column("ROLE", lambda r: r["role"], style=lambda r: {"canary": "cyan"}.get(r["role"])),
    tables.Column("DESIRED", lambda r: r["desiredRevision"] or ""),
    tables.Column("ACTIVE", lambda r: r["activeRevision"] or ""),
    tables.Column("STATE", lambda r: (r["state"] or "") + (" (unreachable)" if r.get("unreachable") else "")),
    tables.Column(
        "VERDICT",
        lambda r: r["verdict"] or "",
        style=lambda r: {"Healthy": "green", "Unhealthy": "red"}.get(r["verdict"] or ""),
    ),
    tables.Column("SAMPLES", lambda r: "" if r["samples"] is None else str(r["samples"])),
]
"""The columns of one deployment's devices (``edgefleet status NAME``)."""


def deployments_table(rows: Sequence[dict[str, Any]], all_namespaces: bool = False) -> RenderableType | str:
    """The deployments as a table: rich on a terminal, aligned plain text elsewhere."""
    columns = tables.shown(DEPLOYMENT_COLUMNS, {"all_namespaces": all_namespaces})
    return tables.render(columns, rows, "ModelDeployments")


def devices_table(rows: Sequence[dict[str, Any]]) -> RenderableType | str:
    return tables.render(DEVICE_COLUMNS, rows, "Devices")


def detail(view: dict[str, Any], rows: Sequence[dict[str, Any]]) -> RenderableType:
    """One deployment: its rollout (stable and canary side by side), conditions, artifacts and devices."""
    counts = view["devices"]
    step = f"{view['step']}/{view['steps']} ({view['stepDescription']})" if view["step"] else "-"
    facts = [
        {"key": "Deployment", "value": f"{view['namespace']}/{view['name']}"},
        {"key": "Model", "value": f"{view['model']} {view['version']}"},
        {"key": "Phase", "value": view["phase"] or "-"},
        {"key": "Step", "value": step},
        {"key": "Stable", "value": f"{view['stableRevision'] or '-'}  ({counts.get('stable', 0)} devices)"},
        {
            "key": "Canary",
            "value": f"{view['canaryRevision'] or '-'}  ({counts.get('updated', 0)} updated, "
            f"{counts.get('healthy', 0)} healthy, {counts.get('failed', 0)} failed of {counts.get('targeted', 0)})"
            if view["canaryRevision"]
            else "-",
        },
        {"key": "Aborted", "value": view["abortedRevision"] or "-"},
        {"key": "Reachable", "value": reachability_line(view.get("reachability") or {})},
    ]
    fact_columns = [tables.Column("FIELD", lambda r: r["key"]), tables.Column("VALUE", lambda r: r["value"])]
    cond_columns = [
        tables.Column("TYPE", lambda r: r["type"]),
        tables.Column("STATUS", lambda r: r["status"]),
        tables.Column("REASON", lambda r: r["reason"]),
        tables.Column("MESSAGE", lambda r: r.get("message", ""), max_width=200),
    ]
    art_columns = [
        tables.Column("TARGET", lambda r: r["target"]),
        tables.Column("PRECISION", lambda r: r["precision"]),
        tables.Column("SIZE", lambda r: str(r["sizeBytes"])),
        tables.Column("DIGEST", lambda r: r["digest"][:19]),
    ]
    parts = [
        tables.render(fact_columns, facts, f"ModelDeployment {view['namespace']}/{view['name']}"),
        tables.render(cond_columns, view["conditions"], "Conditions"),
        tables.render(art_columns, view["artifacts"], "Artifacts"),
        devices_table(rows),
    ]
    if tables.is_terminal():
        return Group(*parts)
    return "\n\n".join(str(p) for p in parts)


async def _collect(cl: cluster.Cluster, name: str | None) -> tuple[Any, RenderableType | str, int | None]:
    if name is None:
        rows = [summary(md) for md in await cl.deployments()]
        return rows, deployments_table(rows, cl.all_namespaces), None
    md = await cl.deployment(name)
    view = summary(md)
    devices = device_rows(md, await cl.devices())
    return {**view, "deviceRows": devices}, detail(view, devices), watching.outcome(md)


async def _run(cl: cluster.Cluster, args: argparse.Namespace) -> int:
    if args.all_namespaces and args.name:
        raise SystemExit("error: a NAME is looked up in one namespace; drop -A or the NAME")
    if not args.watch:
        data, view, _ = await _collect(cl, args.name)
        if args.output == "json":
            print(json.dumps(data, indent=2, sort_keys=True))
        else:
            tables.emit(view)
        return 0

    async def fetch() -> tuple[Any, RenderableType | str, int | None]:
        return await _collect(cl, args.name)

    what = f"ModelDeployment {cl.namespace}/{args.name}" if args.name else "the listed deployments"
    result = await watching.follow(
        fetch, interval=args.interval, timeout=args.timeout, json_output=args.output == "json", what=what
    )
    return watching.EXIT_OK if args.name is None and result == watching.EXIT_TIMEOUT else result


def run(args: argparse.Namespace) -> int:
    """Entry point of ``edgefleet status``."""
    return cluster.run(_run, args)


def register(subparsers: Any) -> None:
    """Add ``status`` to the ``edgefleet`` command."""
    parser = subparsers.add_parser(
        "status",
        help="show ModelDeployments (and one deployment's devices)",
        description=(
            "Without NAME: one row per ModelDeployment (-A: in every namespace). With NAME: its rollout with stable "
            "and canary side by side, conditions, artifacts and one row per device. Plain aligned text when the "
            "output is not a terminal. With --watch and NAME, exits 0 when the rollout is complete, 1 when it "
            "failed, 3 on --timeout."
        ),
    )
    parser.add_argument("name", nargs="?", help="a ModelDeployment to show in detail")
    parser.add_argument("-w", "--watch", action="store_true", help="keep redrawing (with NAME: until the rollout ends)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between redraws with --watch")
    parser.add_argument(
        "--timeout", type=watching.parse_duration, default=None, help="with --watch: give up after this long (10m, 2h)"
    )
    cluster.add_cluster_arguments(parser, all_namespaces=True)
    parser.set_defaults(func=run)


__all__ = [
    "DEPLOYMENT_COLUMNS",
    "DEVICE_COLUMNS",
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
