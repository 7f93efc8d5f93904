"""A fleet in the middle of a rollout, written straight into a real API server: for the dashboard's fast
control-plane tests and its 5,000-device benchmark.

No operator and no agent run: the scene writes what they would have written. One ModelDeployment ``weld`` whose
status has a stable and a canary revision at step 2 of 4; ``n`` EdgeDevices dealt over sites and lines, each with the
operator's desired entry and the agent's status report for the state :func:`state_of` gives it; a heartbeat Lease per
device, renewed now (or two hours ago for the offline ones). :func:`set_state` rewrites one device, as its agent would,
so a test or benchmark can time how long the page takes to show it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

from edgefleet.adapters import kube
from edgefleet.api import common, modeldeployment
from edgefleet.core import fleetmap, revisions
from edgefleet.testing import rollout

NAME = rollout.NAME
MODEL = rollout.MODEL
LEASE_SECONDS = 600
PATTERN: tuple[fleetmap.TileState, ...] = (
    *(("stable",) * 73),
    *(("canary",) * 14),
    *(("installing",) * 6),
    "rolledBack",
    "rolledBack",
    "failed",
    "offline",
    "offline",
    "offline",
    "offline",
)
"""Every hundred devices: 73 stable, 14 canary, 6 installing, 2 rolled back, 1 failed, 4 offline (stable, silent)."""


@dataclasses.dataclass(frozen=True)
class Scene:
    namespace: str
    devices: int
    sites: int = 2
    lines: int = 5
    stable_spec: modeldeployment.ModelDeploymentSpec = dataclasses.field(
        default_factory=lambda: rollout.spec(version="1.0.0")
    )
    canary_spec: modeldeployment.ModelDeploymentSpec = dataclasses.field(
        default_factory=lambda: rollout.spec(version="1.1.0")
    )

    @property
    def stable(self) -> revisions.RevisionTemplate:
        return rollout.template(self.stable_spec)

    @property
    def canary(self) -> revisions.RevisionTemplate:
        return rollout.template(self.canary_spec)

    def name(self, i: int) -> str:
        return f"cam-{i:05d}"

    def labels(self, i: int) -> dict[str, str]:
        line = i % (self.sites * self.lines)
        return {
            "app": "weld",
            common.LABEL_SITE: f"plant-{line // self.lines + 1}",
            common.LABEL_LINE: f"line-{line % self.lines + 1}",
            common.LABEL_HARDWARE_CLASS: "x86",
        }


def state_of(i: int) -> fleetmap.TileState:
    """The state device ``i`` is in (pure): the :data:`PATTERN`, dealt so that each of the 10 lines of a default
    :class:`Scene` (devices go round-robin over them) gets every state in the same proportions.

    >>> from collections import Counter
    >>> Counter(state_of(i) for i in range(3, 1000, 10))["offline"]
    4
    """
    return PATTERN[(i * 37 + i // 10) % len(PATTERN)]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def deployment_body(scene: Scene) -> dict[str, Any]:
    return {
        "apiVersion": common.API_VERSION,
        "kind": modeldeployment.KIND,
        "metadata": {"name": NAME, "namespace": scene.namespace},
        "spec": scene.canary_spec.to_wire(),
    }


def deployment_status(scene: Scene) -> dict[str, Any]:
    now = _now()
    return {
        "observedGeneration": 1,
        "phase": "Progressing",
        "stableRevision": scene.stable.revision,
        "canaryRevision": scene.canary.revision,
        "currentStepIndex": 2,
        "stepStartedAt": now,
        "devices": {"targeted": scene.devices, "updated": 0, "healthy": 0, "failed": 0},
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Progressing",
                "message": "step 3/4 (setWeight 50)",
                "lastTransitionTime": now,
                "observedGeneration": 1,
            },
            {
                "type": "Reconciling",
                "status": "True",
                "reason": "Progressing",
                "message": "step 3/4 (setWeight 50)",
                "lastTransitionTime": now,
                "observedGeneration": 1,
            },
        ],
    }


X86 = {common.LABEL_HARDWARE_CLASS: "x86"}


def _digest(template: revisions.RevisionTemplate) -> str:
    target = template.target_for(X86)
    assert target is not None
    return target.artifact.digest


def desired_entry(scene: Scene, state: fleetmap.TileState) -> dict[str, Any]:
    template = scene.stable if state in ("stable", "offline") else scene.canary
    entry = template.desired_for(NAME, X86)
    assert entry is not None
    return entry.to_wire()


def report(scene: Scene, state: fleetmap.TileState, message: str | None = None) -> dict[str, Any]:
    """The agent's status entry for a device in ``state`` (pure but for the clock)."""
    stable, canary = scene.stable, scene.canary
    old, new = scene.stable_spec.model.version, scene.canary_spec.model.version
    now = _now()
    on_stable = {
        "activeVersion": old,
        "activeRevision": stable.revision,
        "activeDigest": _digest(stable),
    }
    healthy = {"verdict": "Healthy", "samples": 120, "errors": 0, "latencyP95Ms": 3.2, "evaluatedAt": now}
    if state in ("stable", "offline"):
        body = {"state": "Active", "desiredDigest": _digest(stable), **on_stable, "health": healthy}
    elif state == "canary":
        body = {
            "state": "Active",
            "desiredDigest": _digest(canary),
            "activeVersion": new,
            "activeRevision": canary.revision,
            "activeDigest": _digest(canary),
            "previousVersion": old,
            "health": healthy,
        }
    elif state == "installing":
        body = {"state": "Downloading", "desiredDigest": _digest(canary), **on_stable}
    elif state == "rolledBack":
        body = {
            "state": "RolledBack",
            "desiredDigest": _digest(canary),
            **on_stable,
            "message": message
            or f"rolled back version {new} to {old}: LatencyP95: p95 latency 61.30 ms is above latencyP95Ms 50.0",
        }
    elif state == "failed":
        body = {
            "state": "Failed",
            "desiredDigest": _digest(canary),
            **on_stable,
            "message": message or "SmokeTestFailed: golden sample 3 differs from the expected output",
        }
    else:
        raise ValueError(f"no report for state {state!r}")
    return {"name": MODEL, "lastTransitionTime": now, **body}


async def write_device(
    client: kube.Client, scene: Scene, i: int, state: fleetmap.TileState, message: str | None = None
) -> None:
    """Create device ``i`` (or rewrite it) in ``state``: its desired entry, its report and its Lease."""
    name = scene.name(i)
    body = {
        "apiVersion": common.API_VERSION,
        "kind": "EdgeDevice",
        "metadata": {"name": name, "labels": scene.labels(i)},
        "spec": {"models": [desired_entry(scene, state)]},
    }
    await client.apply(kube.EDGEDEVICES, scene.namespace, body, field_manager="edgefleet-operator", force=True)
    patch = {"status": {"agentVersion": "0.1.0", "models": [report(scene, state, message)]}}
    await client.merge_patch(kube.EDGEDEVICES, scene.namespace, name, patch, "status")
    renewed = dt.datetime.now(dt.UTC) - (dt.timedelta(hours=2) if state == "offline" else dt.timedelta(0))
    await client.renew_lease(scene.namespace, name, name, LEASE_SECONDS, renewed)


async def populate(client: kube.Client, scene: Scene, concurrency: int = 32) -> None:
    """The ModelDeployment with its status and every device of the scene."""
    await client.apply(
        kube.MODELDEPLOYMENTS, scene.namespace, deployment_body(scene), field_manager="edgefleet-test", force=True
    )
    await client.merge_patch(
        kube.MODELDEPLOYMENTS, scene.namespace, NAME, {"status": deployment_status(scene)}, "status"
    )
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await write_device(client, scene, i, state_of(i))

    await asyncio.gather(*(one(i) for i in range(scene.devices)))


async def set_state(
    client: kube.Client, scene: Scene, i: int, state: fleetmap.TileState, message: str | None = None
) -> None:
    """Device ``i``'s agent reports ``state`` (its status only; the desired entry stays, so ``canary``,
    ``installing``, ``rolledBack`` and ``failed`` read as such on a device whose entry is the canary's, e.g. one that
    :func:`state_of` made ``canary``)."""
    patch = {"status": {"models": [report(scene, state, message)]}}
    await client.merge_patch(kube.EDGEDEVICES, scene.namespace, scene.name(i), patch, "status")


__all__ = ["LEASE_SECONDS", "PATTERN", "Scene", "populate", "report", "set_state", "state_of", "write_device"]
