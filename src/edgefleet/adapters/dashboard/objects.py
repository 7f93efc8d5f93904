"""What the dashboard reads from the API server, parsed at the boundary: EdgeDevices and ModelDeployments into the
API models, Leases into heartbeats, Events about ModelDeployments into records. An object this version cannot read is
left out (and logged), never half-shown."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pydantic

from edgefleet.api import edgedevice, modeldeployment
from edgefleet.core import fleetmap, rolloutview

log = logging.getLogger(__name__)


def iso(t: dt.datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``, as the API server writes times (pure)."""
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if t is not None else None


def _time(raw: Any) -> dt.datetime | None:
    if not raw:
        return None
    try:
        t = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def parse_device(obj: dict[str, Any]) -> edgedevice.EdgeDevice | None:
    """An EdgeDevice, or None when the API server holds one this version cannot read."""
    try:
        return edgedevice.EdgeDevice.model_validate(obj)
    except pydantic.ValidationError:
        log.warning("Skipped unreadable EdgeDevice name=%s", (obj.get("metadata") or {}).get("name"))
        return None


def parse_deployment(obj: dict[str, Any]) -> modeldeployment.ModelDeployment | None:
    try:
        return modeldeployment.ModelDeployment.model_validate(obj)
    except pydantic.ValidationError:
        log.warning("Skipped unreadable ModelDeployment name=%s", (obj.get("metadata") or {}).get("name"))
        return None


def parse_lease(obj: dict[str, Any]) -> fleetmap.Heartbeat:
    spec = obj.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    return fleetmap.Heartbeat(
        renew_time=_time(spec.get("renewTime")),
        duration_seconds=int(duration) if isinstance(duration, int) else None,
        holder=str(spec["holderIdentity"]) if spec.get("holderIdentity") else None,
    )


def parse_event(obj: dict[str, Any]) -> tuple[str, rolloutview.EventRecord] | None:
    """``(namespace/name of the deployment, event)``."""
    involved = obj.get("involvedObject") or {}
    if involved.get("kind") != modeldeployment.KIND or not involved.get("name"):
        return None
    namespace = involved.get("namespace") or (obj.get("metadata") or {}).get("namespace") or ""
    when = _time(obj.get("lastTimestamp")) or _time(obj.get("eventTime")) or _time(obj.get("firstTimestamp"))
    count = obj.get("count")
    record = rolloutview.EventRecord(
        type=str(obj.get("type") or ""),
        reason=str(obj.get("reason") or "")[:256],
        message=str(obj.get("message") or "")[:4096],
        time=when,
        count=count if isinstance(count, int) else 1,
    )
    return f"{namespace}/{involved['name']}", record


__all__ = ["iso", "parse_deployment", "parse_device", "parse_event", "parse_lease"]
