"""Everything that leaves the device, built in one place from typed metadata: data residency by construction.

The only payloads the agent sends are the EdgeDevice status (this module), the EdgeDevice registration (name,
labels) and the heartbeat Lease (holder, timestamps). Status is an :class:`~edgefleet.api.edgedevice.EdgeDeviceStatus`
built from the install journal, the per-model phase and :class:`~edgefleet.core.health.HealthVerdict` aggregates
(conditions: :mod:`edgefleet.core.deviceconditions`): none of the builders below receives a tensor, so no input or
output value can reach them. :func:`outbound` is the gate:
it re-validates the status and refuses any key outside :data:`ALLOWED_KEYS` (the allow-list: latency
percentiles, counts, error classes, versions, digests, verdicts, states, capabilities).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edgefleet.adapters import protocols
from edgefleet.api.common import Condition
from edgefleet.api.edgedevice import (
    BenchmarkResult,
    Capabilities,
    DesiredModel,
    DownloadReport,
    EdgeDeviceStatus,
    HealthSummary,
    ModelState,
    ModelStatus,
)
from edgefleet.core import deviceconditions, health
from edgefleet.core.errors import EdgefleetError
from edgefleet.edge_reconciler import state

ALLOWED_KEYS = frozenset(
    {
        "observedGeneration", "agentVersion", "capabilities", "models", "conditions",
        # capabilities
        "arch", "cpuFlags", "cpuCount", "memoryBytes", "executionProviders", "onnxruntimeVersion", "hardwareClass",
        # models[]
        "name", "state", "desiredDigest", "activeVersion", "activeDigest", "activeRevision", "previousVersion",
        "previousDigest", "health", "lastTransitionTime", "message", "stagedDigest", "download",
        # models[].download: which mirror or origin served the bundle, and why the ones before it failed
        "source", "failures",
        # models[].health
        "verdict", "samples", "errors", "nonFinite", "latencyP50Ms", "latencyP95Ms", "reason", "evaluatedAt",
        # conditions[]
        "type", "status",
        # benchmarks[] (timings of compiled candidates on this device's hardware)
        "benchmarks", "revision", "timings", "variant", "digest", "p50Ms", "p95Ms", "roundsMs",
    }
)  # fmt: skip
MAX_MESSAGE = deviceconditions.MAX_MESSAGE  # one limit for every message the device sends


class TelemetryError(EdgefleetError):
    """An outbound payload carried a field outside the allow-list (a programming error; nothing is sent). A subclass
    because the report loop must tell it from an unreachable API: it stops instead of retrying."""


@dataclasses.dataclass(frozen=True)
class Phase:
    """Where one model's install stands, with the sentence a person reads."""

    state: ModelState
    message: str | None
    since: dt.datetime
    reason: str | None = None
    """Why the desired version waits, when the state does not say it (``DesiredStateExpired``)."""


PhaseSink = Callable[[str, ModelState, str | None], None]
"""Where the device's parts say a model's phase changed: ``(name, state, message)``."""


def summary(verdict: health.HealthVerdict, now: dt.datetime) -> HealthSummary:
    """Health aggregates for status (pure): counts and percentiles, rounded to microseconds of a millisecond."""
    return HealthSummary(
        verdict=verdict.verdict,
        samples=verdict.samples,
        errors=verdict.errors,
        non_finite=verdict.non_finite,
        latency_p50_ms=round(verdict.latency_p50_ms, 3) if verdict.latency_p50_ms is not None else None,
        latency_p95_ms=round(verdict.latency_p95_ms, 3) if verdict.latency_p95_ms is not None else None,
        reason=verdict.reason,
        evaluated_at=now,
    )


def model_status(
    name: str,
    record: state.ModelRecord | None,
    desired: DesiredModel | None,
    phase: Phase,
    verdict: health.HealthVerdict | None,
    now: dt.datetime,
    download: DownloadReport | None = None,
) -> ModelStatus:
    """Status of one model from the journal record, its phase, its last verdict and download (pure)."""
    active = record.active_slot if record else None
    previous = record.slots.get(record.previous) if record and record.previous else None
    return ModelStatus(
        name=name,
        state=phase.state,
        desired_digest=desired.artifact.digest if desired else None,
        active_version=active.version if active else None,
        active_digest=active.digest if active else None,
        active_revision=active.revision if active else None,
        previous_version=previous.version if previous else None,
        previous_digest=previous.digest if previous else None,
        health=summary(verdict, now) if verdict is not None and active is not None else None,
        last_transition_time=phase.since,
        message=(phase.message or "")[:MAX_MESSAGE] or None,
        staged_digest=record.staged.digest if record is not None and record.staged is not None else None,
        download=download,
    )


def device_status(
    *,
    journal: state.Journal,
    phases: Mapping[str, Phase],
    verdicts: Mapping[str, health.HealthVerdict],
    capabilities: Capabilities | None,
    agent_version: str,
    previous_conditions: Sequence[Condition],
    now: dt.datetime,
    refused: protocols.SpecRefused | None = None,
    benchmarks: Sequence[BenchmarkResult] = (),
    downloads: Mapping[str, DownloadReport] | None = None,
) -> EdgeDeviceStatus:
    """The whole EdgeDevice status (pure). A refused spec (``refused``) is reported as observed, with
    ``Stalled``/``Ready`` saying why; the models keep reporting the last accepted spec."""
    desired = {m.name: m for m in journal.spec.models}
    names = sorted(set(desired) | set(phases))
    models = [
        model_status(
            name,
            journal.models.get(name),
            desired.get(name),
            phases.get(name) or Phase("Pending", None, now),
            verdicts.get(name),
            now,
            (downloads or {}).get(name),
        )
        for name in names
        if name in desired or (journal.models.get(name) and journal.models[name].active)
    ]
    generation = journal.observed_generation
    if refused is not None and refused.generation is not None:
        generation = refused.generation
    return EdgeDeviceStatus(
        observed_generation=generation,
        agent_version=agent_version,
        capabilities=capabilities,
        models=models,
        benchmarks=list(benchmarks),
        conditions=deviceconditions.conditions(
            previous_conditions,
            models,
            generation,
            now,
            refused.message if refused is not None else None,
            expired=[n for n, p in phases.items() if p.reason == deviceconditions.EXPIRED],
        ),
    )


def _check_keys(value: Any, path: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in ALLOWED_KEYS:
                raise TelemetryError(f"{path}.{key} is not in the telemetry allow-list; refusing to send it")
            _check_keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_keys(item, f"{path}[{i}]")


def outbound(status: EdgeDeviceStatus) -> dict[str, Any]:
    """The wire form of ``status`` after the allow-list gate; the only status payload the agent sends."""
    wire = EdgeDeviceStatus.model_validate(status.to_wire()).to_wire()
    _check_keys(wire, "status")
    return wire


__all__ = [
    "ALLOWED_KEYS",
    "Phase",
    "PhaseSink",
    "TelemetryError",
    "device_status",
    "model_status",
    "outbound",
    "summary",
]
