"""EdgeDevices as the rollout planner reads and changes them: the entries a deployment owns and one device's view.

A deployment owns the ``spec.models`` entries whose ``deployment`` names it; a change replaces exactly those, so two
deployments (and the devices' own status writes) never overwrite each other. :class:`DeviceView` is what one planning
pass knows about a device: its labels, whether the deployment targets it, the entry it has now and what it reports.
The entry it *should* have is decided by the pass and kept in :class:`~edgefleet.core.planner.availability.Ledger`,
so every question about a device here takes that entry as an argument. Everything here is pure.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

from edgefleet.api import edgedevice, modeldeployment
from edgefleet.core.planner import reachability

MAX_NAMES = 8
"""Device names quoted in one message."""
MAX_LISTED = 20
"""Unreachable devices listed in ``status.reachability.devices``."""


@dataclasses.dataclass(frozen=True)
class DeviceChange:
    """Replace the entries this deployment owns on ``device`` by ``desired`` (None removes them)."""

    device: str
    desired: edgedevice.DesiredModel | None


def owned_entries(device: edgedevice.EdgeDevice, deployment: str) -> list[edgedevice.DesiredModel]:
    """The ``spec.models`` entries ``deployment`` owns on ``device`` (pure)."""
    return [m for m in device.spec.models if m.deployment == deployment]


def apply_change(
    device: edgedevice.EdgeDevice, deployment: str, desired: edgedevice.DesiredModel | None
) -> edgedevice.EdgeDevice:
    """``device`` with the entries of ``deployment`` replaced by ``desired`` (pure); other entries keep their order."""
    models = [m for m in device.spec.models if m.deployment != deployment]
    if desired is not None:
        models = [m for m in models if m.name != desired.name] + [desired]
    return device.model_copy(update={"spec": edgedevice.EdgeDeviceSpec(models=models)})


def removal(md: modeldeployment.ModelDeployment, devices: Sequence[edgedevice.EdgeDevice]) -> list[DeviceChange]:
    """The changes that remove ``md``'s models from every device, for deletion (pure)."""
    return [DeviceChange(d.metadata.name, None) for d in devices if owned_entries(d, md.metadata.name)]


def stale_after(health: modeldeployment.HealthSpec) -> dt.timedelta:
    """How old a health verdict may be and still count: three evaluation windows, at least 2 min (pure).

    A device that stopped reporting keeps its last verdict in status; past this age it counts as silent, so a canary
    that went dark cannot pass an analysis on an old "Healthy".

    >>> stale_after(modeldeployment.HealthSpec(window_seconds=60))
    datetime.timedelta(seconds=180)
    """
    return dt.timedelta(seconds=max(3 * health.window_seconds, 120))


def names(items: Iterable[str]) -> str:
    """Device names for a message: sorted, at most :data:`MAX_NAMES`, then how many more (pure).

    >>> names(["b", "a"])
    'a, b'
    >>> names(f"d{i:02d}" for i in range(10))
    'd00, d01, d02, d03, d04, d05, d06, d07 and 2 more'
    """
    ordered = sorted(items)
    shown = ", ".join(ordered[:MAX_NAMES])
    return shown + (f" and {len(ordered) - MAX_NAMES} more" if len(ordered) > MAX_NAMES else "")


@dataclasses.dataclass(frozen=True)
class DeviceView:
    """One EdgeDevice as a planning pass reads it."""

    name: str
    labels: Mapping[str, str]
    targeted: bool
    """The selector matches and no other deployment owns this model on the device."""
    foreign: bool
    """Another deployment owns an entry for the same model name: this deployment leaves the device alone."""
    original: edgedevice.DesiredModel | None
    """The entry this deployment has on the device now."""
    report: edgedevice.ModelStatus | None
    dirty: bool
    """More than one owned entry (the model was renamed): the device needs a rewrite whatever the pass decides."""
    fresh: bool
    """The health verdict is recent enough to count (see :func:`stale_after`)."""
    reach: reachability.Reachability = reachability.REACHABLE
    """Whether the rollout can count on the device now (see :mod:`~edgefleet.core.planner.reachability`)."""
    contact: reachability.Contact | None = None
    """Its Lease as the operator observed it."""

    @property
    def reachable(self) -> bool:
        return self.reach.reachable

    @property
    def stuck(self) -> bool:
        """Unreachable because it did not pick up its entry although its Lease may be fresh: its entry is left as it is
        while a rollout moves forward, so the device is not offered the same change again and again."""
        return self.reach.reason == "NotPickedUp"

    @property
    def active(self) -> str | None:
        """The revision the device reports running."""
        return self.report.active_revision if self.report is not None else None

    def unavailable(self, entry: edgedevice.DesiredModel | None) -> bool:
        """With ``entry`` as its desired model, the device would not run what it was asked to."""
        return entry is not None and self.active != entry.revision

    def converged(self, entry: edgedevice.DesiredModel | None, revision: str) -> bool:
        """Asked to run ``revision`` (``entry``) and running it."""
        return entry is not None and entry.revision == revision and self.active == revision

    def failed(self, entry: edgedevice.DesiredModel | None, revision: str) -> bool:
        """The device reports that ``revision`` failed: it failed to install or rolled itself back, or it runs it and
        judges it unhealthy. ``desiredDigest`` ties a Failed/RolledBack state to this revision's artifact, so a failure
        of an earlier revision is not held against this one."""
        report = self.report
        if report is None or entry is None or entry.revision != revision:
            return False
        if report.active_revision == revision:
            return report.health is not None and report.health.verdict == "Unhealthy"
        return report.state in ("Failed", "RolledBack") and report.desired_digest == entry.artifact.digest

    def healthy(self, entry: edgedevice.DesiredModel | None, revision: str) -> bool:
        """Runs ``revision`` with a recent Healthy verdict."""
        health = self.report.health if self.report is not None else None
        return self.converged(entry, revision) and self.fresh and health is not None and health.verdict == "Healthy"

    def samples(self, entry: edgedevice.DesiredModel | None, revision: str) -> int:
        """The samples behind the verdict on ``revision`` (0 when the device does not run it)."""
        health = self.report.health if self.report is not None else None
        return health.samples if self.converged(entry, revision) and health is not None else 0

    def why_unhealthy(self) -> str:
        """The device's name with what it reports, for an evidence message."""
        report = self.report
        if report is None:
            return self.name
        detail = (report.health.reason if report.health is not None else None) or report.message or report.state
        return f"{self.name} ({detail})" if detail else self.name


def view(
    device: edgedevice.EdgeDevice,
    md: modeldeployment.ModelDeployment,
    now: dt.datetime,
    contact: reachability.Contact | None = None,
) -> DeviceView:
    """What deployment ``md`` knows about ``device`` at ``now``, with its Lease as ``contact`` (pure)."""
    name, spec = md.metadata.name, md.spec
    labels = dict(device.metadata.labels or {})
    owned = owned_entries(device, name)
    foreign = any(m.name == spec.model.name and m.deployment != name for m in device.spec.models)
    entry = owned[0] if owned else None
    report_name = entry.name if entry is not None else spec.model.name
    statuses = device.status.models if device.status is not None else []
    report = next((s for s in statuses if s.name == report_name), None)
    return DeviceView(
        name=device.metadata.name,
        labels=labels,
        targeted=spec.selector.matches(labels) and not foreign,
        foreign=foreign,
        original=entry,
        report=report,
        dirty=len(owned) > 1,
        fresh=_fresh(report, now, stale_after(spec.health)),
        reach=reachability.judge(entry, report, contact, spec.rollout.pickup_timeout_seconds, now),
        contact=contact,
    )


def _fresh(report: edgedevice.ModelStatus | None, now: dt.datetime, limit: dt.timedelta) -> bool:
    health = report.health if report is not None else None
    if health is None or health.evaluated_at is None:
        return True  # nothing dated to judge; a missing verdict is handled as silence elsewhere
    return now - health.evaluated_at <= limit


__all__ = [
    "MAX_LISTED",
    "MAX_NAMES",
    "DeviceChange",
    "DeviceView",
    "apply_change",
    "names",
    "owned_entries",
    "removal",
    "stale_after",
    "view",
]
