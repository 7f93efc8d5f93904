"""An in-memory fleet for planner tests: ModelDeployments, EdgeDevices that report what they run, and a clock.

:class:`Fleet` applies plans the way the operator does (device entries via :func:`planner.apply_change`, status
replaced, the stable template kept) and lets a test decide what each device reports, so tests assert on the resulting
state. It is a fake of the cluster for fast unit tests of pure logic only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from edgefleet.api import common, edgedevice, modeldeployment
from edgefleet.core import planner, revisions
from edgefleet.core.planner import reachability

T0 = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)  # a Monday
NAME = "weld"
MODEL = "weld-defect"


def spec(
    *,
    steps: Sequence[dict[str, Any]] | None = None,
    version: str = "1.0.0",
    max_unavailable: int | str = "25%",
    threshold: float = 0.8,
    deadline: int = 600,
    windows: list[dict[str, Any]] | None = None,
    paused: bool = False,
    automatic: bool = True,
    selector: dict[str, Any] | None = None,
    max_unreachable: int | str = "20%",
    pickup: int = 120,
    validity: int = 12 * 3600,
    prestage: dict[str, Any] | None = None,
) -> modeldeployment.ModelDeploymentSpec:
    """A valid spec; the model digest follows the version so each version is a new revision."""
    rollout: dict[str, Any] = {
        "steps": list(
            steps
            or [
                {"setWeight": 10},
                {"analysis": {"durationSeconds": 60, "minSamples": 100}},
                {"setWeight": 50},
                {"setWeight": 100},
            ]
        ),
        "maxUnavailable": max_unavailable,
        "successThreshold": threshold,
        "progressDeadlineSeconds": deadline,
        "maxUnreachable": max_unreachable,
        "pickupTimeoutSeconds": pickup,
        "desiredValiditySeconds": validity,
    }
    if windows is not None:
        rollout["maintenanceWindows"] = windows
    if prestage is not None:
        rollout["prestage"] = prestage
    return modeldeployment.ModelDeploymentSpec.model_validate(
        {
            "model": {
                "name": MODEL,
                "version": version,
                "uri": "https://models.example.com/weld.onnx",
                "sha256": hashlib.sha256(version.encode()).hexdigest(),
                "task": "classification",
            },
            "compile": {
                "targets": [
                    {
                        "name": "arm64",
                        "selector": {"matchLabels": {common.LABEL_HARDWARE_CLASS: "arm64"}},
                        "evaluation": {"uri": "https://models.example.com/eval.npz", "sha256": "c" * 64},
                    },
                    {
                        "name": "x86",
                        "evaluation": {"uri": "https://models.example.com/eval.npz", "sha256": "c" * 64},
                    },
                ]
            },
            "selector": selector or {"matchLabels": {"app": "weld"}},
            "rollout": rollout,
            "paused": paused,
            "rollback": {"automatic": automatic},
        }
    )


def template(s: modeldeployment.ModelDeploymentSpec) -> revisions.RevisionTemplate:
    """The compiled template of ``s``: one artifact per target, digests derived from revision and target."""
    revision = revisions.revision_of(s)
    artifacts = {
        t.name: edgedevice.ArtifactRef(
            uri=f"http://store.example:8080/artifacts/sha256/{_hex(revision, t.name)}",
            digest="sha256:" + _hex(revision, t.name),
            size_bytes=1000,
            precision="int8" if t.name == "arm64" else "fp32",
        )
        for t in s.compile.targets
    }
    return revisions.template_for(s, artifacts)


def _hex(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def device(name: str, site: str = "s1", line: str = "l1", hw: str = "x86", app: str = "weld") -> edgedevice.EdgeDevice:
    labels = {common.LABEL_SITE: site, common.LABEL_LINE: line, common.LABEL_HARDWARE_CLASS: hw, "app": app}
    return edgedevice.EdgeDevice(metadata=common.ObjectMeta(name=name, namespace="plant", labels=labels))


def layout(n: int, sites: int = 2, lines: int = 2) -> list[edgedevice.EdgeDevice]:
    """``n`` devices dealt round-robin over ``sites`` x ``lines`` lines; every third device is arm64."""
    out = []
    for i in range(n):
        line = i % (sites * lines)
        out.append(
            device(
                f"dev-{i:02d}",
                f"site-{line // lines}",
                f"line-{line % lines}",
                "arm64" if i % 3 == 0 else "x86",
            )
        )
    return out


Verdict = Callable[[str, str], str | None]
"""(device name, revision) -> "Healthy", "Unhealthy", "RolledBack", "Silent" or None (report nothing new)."""


def healthy(_device: str, _revision: str) -> str | None:
    return "Healthy"


@dataclasses.dataclass
class Fleet:
    """The cluster as the planner sees it, plus what every device ever had as desired revision."""

    md: modeldeployment.ModelDeployment
    devices: dict[str, edgedevice.EdgeDevice]
    now: dt.datetime = T0
    stable: revisions.RevisionTemplate | None = None
    compiled: bool = True
    history: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    events: list[planner.Event] = dataclasses.field(default_factory=list)
    last: planner.RolloutPlan | None = None
    lease_seconds: float | None = None
    """With a value, every device has a Lease of this duration, renewed at every :meth:`tick` unless it is off."""
    renewed: dict[str, dt.datetime] = dataclasses.field(default_factory=dict)
    off: set[str] = dataclasses.field(default_factory=set)
    """Devices without power: they neither report nor renew their Lease."""

    @classmethod
    def new(cls, s: modeldeployment.ModelDeploymentSpec, devices: Sequence[edgedevice.EdgeDevice]) -> Fleet:
        md = modeldeployment.ModelDeployment(
            metadata=common.ObjectMeta(name=NAME, namespace="plant", generation=1), spec=s
        )
        return cls(md=md, devices={d.metadata.name: d for d in devices})

    def with_leases(self, seconds: float) -> Fleet:
        """Give every device a Lease of ``seconds``, renewed now."""
        self.lease_seconds = seconds
        self.renewed = dict.fromkeys(self.devices, self.now)
        return self

    def power_off(self, *names: str) -> None:
        self.off.update(names)

    def power_on(self, *names: str) -> None:
        """The devices come back: they renew their Lease at once."""
        self.off.difference_update(names)
        for name in names:
            self.renewed[name] = self.now

    def contacts(self) -> dict[str, reachability.Contact] | None:
        if self.lease_seconds is None:
            return None
        return {n: reachability.Contact(at, self.lease_seconds) for n, at in self.renewed.items() if n in self.devices}

    def plan(self) -> planner.RolloutPlan:
        candidate = template(self.md.spec) if self.compiled else None
        return planner.plan(self.md, list(self.devices.values()), candidate, self.stable, self.now, self.contacts())

    def apply(self, p: planner.RolloutPlan) -> None:
        for change in p.changes:
            self.devices[change.device] = planner.apply_change(self.devices[change.device], NAME, change.desired)
            if change.desired is not None:
                self.history.setdefault(change.device, []).append(change.desired.revision)
        self.md = self.md.model_copy(update={"status": p.status})
        self.stable = p.stable
        self.events.extend(p.events)
        self.last = p

    def reconcile(self) -> planner.RolloutPlan:
        p = self.plan()
        self.apply(p)
        return p

    def report(self, verdict: Verdict = healthy, samples: int = 60, stage: bool = True) -> None:
        """Every device reports on its desired entry as ``verdict`` says; with ``stage``, a download ahead named in
        the entry is reported staged (``stagedDigest``)."""
        for name, dev in list(self.devices.items()):
            entry = next((m for m in dev.spec.models if m.deployment == NAME), None)
            if entry is None or name in self.off:
                continue
            said = verdict(name, entry.revision)
            if said is None:
                continue
            previous = self.entry_report(name)
            prev_rev = previous.active_revision if previous is not None else None
            if said == "Silent":
                status = edgedevice.ModelStatus(
                    name=entry.name,
                    state="Installing",
                    desired_digest=entry.artifact.digest,
                    active_revision=prev_rev,
                )
            elif said == "RolledBack":
                status = edgedevice.ModelStatus(
                    name=entry.name,
                    state="RolledBack",
                    desired_digest=entry.artifact.digest,
                    active_revision=prev_rev if prev_rev != entry.revision else None,
                    message="smoke test failed: output 0 differs",
                )
            else:
                status = edgedevice.ModelStatus(
                    name=entry.name,
                    state="Active",
                    desired_digest=entry.artifact.digest,
                    active_digest=entry.artifact.digest,
                    active_version=entry.version,
                    active_revision=entry.revision,
                    health=edgedevice.HealthSummary(
                        verdict="Healthy" if said == "Healthy" else "Unhealthy",
                        samples=samples,
                        reason=None if said == "Healthy" else "p95 latency 80.0ms > 50.0ms",
                        evaluated_at=self.now,
                    ),
                )
            if stage and entry.prestage is not None:
                status = status.model_copy(update={"staged_digest": entry.prestage.artifact.digest})
            self.devices[name] = dev.model_copy(update={"status": edgedevice.EdgeDeviceStatus(models=[status])})

    def entry_report(self, name: str) -> edgedevice.ModelStatus | None:
        st = self.devices[name].status
        return st.models[0] if st is not None and st.models else None

    def desired_revisions(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for name, dev in self.devices.items():
            entry = next((m for m in dev.spec.models if m.deployment == NAME), None)
            out[name] = entry.revision if entry is not None else None
        return out

    def on(self, revision: str | None) -> list[str]:
        return sorted(n for n, r in self.desired_revisions().items() if r == revision)

    def unavailable(self) -> int:
        count = 0
        for name, dev in self.devices.items():
            if not self.md.spec.selector.matches(dev.metadata.labels or {}):
                continue
            entry = next((m for m in dev.spec.models if m.deployment == NAME), None)
            report = self.entry_report(name)
            if entry is not None and (report is None or report.active_revision != entry.revision):
                count += 1
        return count

    def set_spec(self, s: modeldeployment.ModelDeploymentSpec) -> None:
        gen = (self.md.metadata.generation or 0) + 1
        self.md = self.md.model_copy(
            update={"spec": s, "metadata": self.md.metadata.model_copy(update={"generation": gen})}
        )

    def annotate(self, key: str, value: str | None) -> None:
        annotations = dict(self.md.metadata.annotations or {})
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
        self.md = self.md.model_copy(
            update={"metadata": self.md.metadata.model_copy(update={"annotations": annotations})}
        )

    def tick(self, seconds: float) -> None:
        """Advance the clock; devices with power renew their Lease."""
        self.now += dt.timedelta(seconds=seconds)
        if self.lease_seconds is not None:
            for name in self.devices:
                if name not in self.off:
                    self.renewed[name] = self.now

    def run(self, verdict: Verdict = healthy, rounds: int = 50, seconds: float = 10.0) -> None:
        """Reconcile, let devices report, advance the clock; until nothing changes or ``rounds`` run out."""
        for _ in range(rounds):
            p = self.reconcile()
            self.report(verdict)
            self.tick(seconds)
            if not p.changes and not p.events and p.status.phase in ("Healthy", "RolledBack", "Degraded"):
                return

    @property
    def status(self) -> modeldeployment.ModelDeploymentStatus:
        assert self.md.status is not None
        return self.md.status

    def condition(self, type_: str) -> common.Condition | None:
        return next((c for c in self.status.conditions if c.type == type_), None)
