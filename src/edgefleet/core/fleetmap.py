"""The fleet map: every EdgeDevice as one tile, grouped by site and line, and what each tile says (pure).

A tile is coloured by what its device runs and how that is going. The state of one model on a device, from the
desired entry the operator wrote, the report the agent wrote and the deployment's stable and canary revisions:

========== =====================================================================================================
state      when
========== =====================================================================================================
failed     the install failed (bad download, signature, smoke test), or the model it runs is judged Unhealthy
rolledBack the device rolled the desired version back on its own (health on probation, crashes)
installing the device does not run its desired revision yet (downloading, verifying, waiting to pick it up)
canary     it runs the deployment's canary revision
stable     it runs the deployment's stable revision
other      it runs its desired revision, which is neither (a deployment whose status has not caught up)
idle       nothing is desired and nothing reported
========== =====================================================================================================

A device is one tile whatever it runs: the most urgent state of its models wins, in the order of :data:`SEVERITY`,
and ``offline`` (its heartbeat Lease was not renewed within its duration, :func:`reachability`) comes before all of
them, since what an offline device last reported may no longer be true.

Worked example: ``cam-7`` (site ``plant-north``, line ``line-2``) is asked for ``1.1.0-abc`` (the canary) and reports
``state: RolledBack, message: "rolled back version 1.1.0 to 1.0.0: LatencyP95: ..."`` with its Lease renewed 10 s
ago: its tile is ``rolledBack`` with that message as the reason. The same device with a Lease last renewed 700 s ago
and a 600 s duration is ``offline``, reason ``no heartbeat since <that renewal> (Lease duration 600 s); last
reported: rolled back ...``. :func:`summarise` counts tiles per line and site, which is what the page shows first at
5,000 devices.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from edgefleet.api import common, edgedevice, modeldeployment

TileState = Literal["offline", "failed", "rolledBack", "installing", "canary", "stable", "other", "idle"]
SEVERITY: tuple[TileState, ...] = ("offline", "failed", "rolledBack", "installing", "canary", "other", "stable", "idle")
"""The most urgent first: a device's tile shows the first of these that any of its models is in."""
MAX_REASON = 512
"""Characters of a reason on a tile (the device page shows the full messages)."""


# --- reachability -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Heartbeat:
    """What a device's ``coordination.k8s.io`` Lease says (its agent renews it three times per ``duration``)."""

    renew_time: dt.datetime | None
    duration_seconds: int | None
    holder: str | None = None


@dataclasses.dataclass(frozen=True)
class Reachability:
    """Whether a device is online; ``online`` None means unknown (its Leases cannot be read)."""

    online: bool | None
    reason: str
    last_seen: dt.datetime | None = None


UNKNOWN = Reachability(None, "reachability unknown: the Leases cannot be read")


def reachability(heartbeat: Heartbeat | None, now: dt.datetime) -> Reachability:
    """A device is offline when its Lease was not renewed within its duration (pure).

    This is the one place that decides it: when the API carries reachability as a field of its own, this function
    reads that field instead.

    >>> t = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
    >>> reachability(Heartbeat(t - dt.timedelta(seconds=30), 40), t).online
    True
    >>> reachability(Heartbeat(t - dt.timedelta(seconds=50), 40), t).reason
    'no heartbeat since 2026-01-05 09:59:10 UTC (Lease duration 40 s)'
    >>> reachability(None, t).reason
    'no heartbeat Lease: the agent never reported in'
    """
    if heartbeat is None:
        return Reachability(False, "no heartbeat Lease: the agent never reported in")
    if heartbeat.renew_time is None or not heartbeat.duration_seconds:
        return Reachability(False, "its heartbeat Lease has no renewTime or duration", heartbeat.renew_time)
    if (now - heartbeat.renew_time).total_seconds() > heartbeat.duration_seconds:
        # The reason names the last renewal, not the time since: it stays the same while the device stays offline,
        # so an offline tile does not change (and travel to every page) every second.
        since = heartbeat.renew_time.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return Reachability(
            False, f"no heartbeat since {since} (Lease duration {heartbeat.duration_seconds} s)", heartbeat.renew_time
        )
    return Reachability(True, "online", heartbeat.renew_time)


# --- one model on one device ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelTile:
    """Where one model stands on one device."""

    model: str
    deployment: str | None
    state: TileState
    reason: str
    desired_version: str | None = None
    desired_revision: str | None = None
    active_version: str | None = None
    active_revision: str | None = None


def _cut(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def model_state(
    entry: edgedevice.DesiredModel | None,
    report: edgedevice.ModelStatus | None,
    status: modeldeployment.ModelDeploymentStatus | None,
) -> tuple[TileState, str]:
    """The state of one model on a device and why, from its desired entry, its report and the deployment's status
    (pure; the table in the module docstring).

    >>> report = edgedevice.ModelStatus(name="m", state="Downloading", active_revision="r1")
    >>> model_state(None, report, None)
    ('other', 'serves r1, which is not desired any more')
    >>> model_state(None, None, None)
    ('idle', 'nothing desired')
    """
    health = report.health if report is not None else None
    if entry is None:
        if report is not None and report.state in ("Failed", "RolledBack"):
            state: TileState = "failed" if report.state == "Failed" else "rolledBack"
            return state, _cut(report.message) or f"{report.state}, and nothing is desired any more"
        if report is None or report.active_revision is None:
            return "idle", "nothing desired"
        return "other", f"serves {report.active_revision}, which is not desired any more"
    if report is None:
        return "installing", f"waiting for the device to report {entry.version}"
    current = report.desired_digest is None or report.desired_digest == entry.artifact.digest
    if current and report.state == "Failed":
        return "failed", _cut(report.message) or f"installing {entry.version} failed"
    if current and report.state == "RolledBack":
        detail = report.message or (health.reason if health else None)
        return "rolledBack", _cut(detail) or f"rolled back {entry.version}"
    if report.active_revision != entry.revision:
        serving = f" (serving {report.active_version})" if report.active_version else ""
        if not current:
            return "installing", f"asked for {entry.version}, not picked up yet{serving}"
        return "installing", f"{report.state} {entry.version}{serving}"
    if health is not None and health.verdict == "Unhealthy":
        return "failed", _cut(health.reason) or f"{entry.version} is unhealthy"
    verdict = f"health {health.verdict} ({health.samples} samples)" if health is not None else "no health verdict yet"
    if status is not None and entry.revision == status.canary_revision:
        return "canary", f"canary {entry.version}, {verdict}"
    if status is not None and entry.revision == status.stable_revision:
        return "stable", f"stable {entry.version}, {verdict}"
    return "other", f"runs {entry.version} ({entry.revision}), {verdict}"


# --- one device -----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Tile:
    """One device on the map."""

    namespace: str
    name: str
    site: str
    line: str
    hardware: str
    state: TileState
    reason: str
    models: tuple[ModelTile, ...]
    online: bool | None
    note: str = ""
    """What the dashboard remembers about the device that its state no longer shows (:func:`rollback_note`)."""

    @property
    def id(self) -> str:
        """``namespace/name``: unique over every namespace the map shows."""
        return f"{self.namespace}/{self.name}"

    @property
    def line_key(self) -> str:
        """``site/line`` (label values cannot contain ``/``)."""
        return line_key(self.site, self.line)

    def to_json(self) -> dict[str, Any]:
        """What the page gets: short keys, since 5,000 of them may travel at once (pure)."""
        versions = sorted({m.active_version for m in self.models if m.active_version})
        out = {
            "id": self.id,
            "n": self.name,
            "s": self.site,
            "l": self.line,
            "st": self.state,
            "r": self.reason,
            "v": ", ".join(versions),
        }
        if self.note:
            out["rb"] = self.note
        return out


def line_key(site: str, line: str) -> str:
    return f"{site}/{line}"


def tile(
    device: edgedevice.EdgeDevice,
    deployments: Mapping[str, modeldeployment.ModelDeployment],
    reach: Reachability,
) -> Tile:
    """The tile of ``device``; ``deployments`` are those of its namespace by name (pure)."""
    labels = device.metadata.labels or {}
    reports = {m.name: m for m in (device.status.models if device.status is not None else [])}
    models: list[ModelTile] = []
    for entry in device.spec.models:
        md = deployments.get(entry.deployment)
        report = reports.pop(entry.name, None)
        state, reason = model_state(entry, report, md.status if md is not None else None)
        models.append(
            ModelTile(
                entry.name,
                entry.deployment,
                state,
                reason,
                entry.version,
                entry.revision,
                report.active_version if report else None,
                report.active_revision if report else None,
            )
        )
    for name, report in sorted(reports.items()):  # reported but no longer desired
        state, reason = model_state(None, report, None)
        models.append(ModelTile(name, None, state, reason, None, None, report.active_version, report.active_revision))
    worst = min(models, key=lambda m: SEVERITY.index(m.state)) if models else None
    shown: TileState = worst.state if worst is not None else "idle"
    reason = ""
    if worst is not None:
        reason = f"{worst.model}: {worst.reason}" if len(models) > 1 else worst.reason
    if reach.online is False:
        shown, reason = "offline", _cut(f"{reach.reason}; last reported: {reason or 'nothing'}")
    return Tile(
        namespace=device.metadata.namespace or "",
        name=device.metadata.name,
        site=labels.get(common.LABEL_SITE, ""),
        line=labels.get(common.LABEL_LINE, ""),
        hardware=labels.get(common.LABEL_HARDWARE_CLASS, ""),
        state=shown,
        reason=reason or "nothing desired",
        models=tuple(models),
        online=reach.online,
    )


# --- what the map remembers -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rollback:
    """A device seen rolling back its desired revision of ``deployment`` on its own."""

    deployment: str
    revision: str
    version: str
    reason: str
    at: dt.datetime


def rollbacks(t: Tile, now: dt.datetime) -> list[Rollback]:
    """The rollbacks ``t`` shows right now, to remember (pure)."""
    return [
        Rollback(m.deployment, m.desired_revision, m.desired_version or "", m.reason, now)
        for m in t.models
        if m.state == "rolledBack" and m.deployment is not None and m.desired_revision is not None
    ]


def rollback_note(seen: Rollback | None, deployments: Mapping[str, modeldeployment.ModelDeployment]) -> str:
    """What a tile keeps saying about a rollback once the device is back on stable (pure).

    After an abort the operator asks every device for the stable revision again, so the devices that rolled the
    canary back on their own look like all the others. The note stays while that revision is still the canary or is
    the aborted one, and goes once another revision rolls out.

    >>> t0 = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
    >>> seen = Rollback("weld", "1.2.0-abc", "1.2.0", "rolled back version 1.2.0 to 1.1.0: LatencyP95: slow", t0)
    >>> rollback_note(seen, {})
    ''
    """
    if seen is None:
        return ""
    md = deployments.get(seen.deployment)
    status = md.status if md is not None else None
    if status is None or seen.revision not in (status.canary_revision, status.aborted_revision):
        return ""
    return _cut(f"rolled back {seen.version} on its own at {seen.at.astimezone(dt.UTC):%H:%M:%S} UTC: {seen.reason}")


# --- aggregates -----------------------------------------------------------------------------------------------------


def _natural(text: str) -> tuple[Any, ...]:
    """Sort key that puts ``line-2`` before ``line-10`` and empty (unlabelled) last (pure)."""
    parts = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]
    return (text == "", tuple((0, p) if isinstance(p, int) else (1, p) for p in parts))


def counts(states: Iterable[TileState]) -> dict[str, int]:
    """How many of each state, every state present (pure).

    >>> counts(["canary", "stable", "canary"])["canary"]
    2
    """
    out: dict[str, int] = dict.fromkeys(SEVERITY, 0)
    for state in states:
        out[state] += 1
    return out


@dataclasses.dataclass(frozen=True)
class LineSummary:
    site: str
    line: str
    total: int
    counts: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"key": line_key(self.site, self.line), "line": self.line, "total": self.total, "counts": self.counts}


@dataclasses.dataclass(frozen=True)
class SiteSummary:
    site: str
    total: int
    counts: dict[str, int]
    lines: tuple[LineSummary, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "total": self.total,
            "counts": self.counts,
            "lines": [line.to_json() for line in self.lines],
        }


@dataclasses.dataclass(frozen=True)
class FleetSummary:
    total: int
    counts: dict[str, int]
    sites: tuple[SiteSummary, ...]

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "counts": self.counts, "sites": [s.to_json() for s in self.sites]}


def summarise(tiles: Iterable[Tile]) -> FleetSummary:
    """Tiles counted per line and site, sites and lines in natural order (pure).

    >>> t = Tile("ns", "a", "north", "line-10", "x86", "canary", "", (), True)
    >>> u = dataclasses.replace(t, name="b", line="line-2", state="stable")
    >>> s = summarise([t, u])
    >>> [line.line for line in s.sites[0].lines], s.counts["canary"], s.total
    (['line-2', 'line-10'], 1, 2)
    """
    by_line: dict[tuple[str, str], list[TileState]] = {}
    for t in tiles:
        by_line.setdefault((t.site, t.line), []).append(t.state)
    sites: dict[str, list[LineSummary]] = {}
    for (site, line), states in by_line.items():
        sites.setdefault(site, []).append(LineSummary(site, line, len(states), counts(states)))
    out = []
    for site in sorted(sites, key=_natural):
        lines = tuple(sorted(sites[site], key=lambda s: _natural(s.line)))
        out.append(SiteSummary(site, sum(x.total for x in lines), _add(x.counts for x in lines), lines))
    return FleetSummary(sum(s.total for s in out), _add(s.counts for s in out), tuple(out))


def _add(many: Iterable[Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = dict.fromkeys(SEVERITY, 0)
    for c in many:
        for key, value in c.items():
            out[key] += value
    return out


def line_tiles(tiles: Iterable[Tile], key: str) -> list[Tile]:
    """The tiles of one line, by name (pure)."""
    return sorted((t for t in tiles if t.line_key == key), key=lambda t: _natural(t.name))


def deployment_states(tiles: Sequence[Tile], namespace: str, deployment: str) -> list[TileState]:
    """The state of ``deployment``'s model on each device that has an entry of it, offline devices as ``offline``
    (pure)."""
    out: list[TileState] = []
    for t in tiles:
        if t.namespace != namespace:
            continue
        for m in t.models:
            if m.deployment == deployment:
                out.append("offline" if t.online is False else m.state)
    return out


__all__ = [
    "MAX_REASON",
    "SEVERITY",
    "UNKNOWN",
    "FleetSummary",
    "Heartbeat",
    "LineSummary",
    "ModelTile",
    "Reachability",
    "Rollback",
    "SiteSummary",
    "Tile",
    "TileState",
    "counts",
    "deployment_states",
    "line_key",
    "line_tiles",
    "model_state",
    "reachability",
    "rollback_note",
    "rollbacks",
    "summarise",
    "tile",
]
