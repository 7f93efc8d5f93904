"""Prometheus metrics of the operator, served at ``/metrics`` next to the artifacts.

Names follow Prometheus conventions (``_seconds``, ``_total``); labels are bounded (namespace, deployment, a fixed set
of states and reasons), never device names, so cardinality stays proportional to deployments.
"""

from __future__ import annotations

import prometheus_client

from edgefleet.api import modeldeployment

ROLLOUT_STEP = prometheus_client.Gauge(
    "edgefleet_rollout_step",
    "Index of the current rollout step (-1 when no rollout runs).",
    ["namespace", "deployment"],
)
DEVICES = prometheus_client.Gauge(
    "edgefleet_rollout_devices",
    "Targeted devices by state.",
    ["namespace", "deployment", "state"],
)
PHASE = prometheus_client.Gauge(
    "edgefleet_rollout_phase",
    "1 for the current phase of a deployment, 0 for the others.",
    ["namespace", "deployment", "phase"],
)
COMPILE_SECONDS = prometheus_client.Histogram(
    "edgefleet_compile_duration_seconds",
    "Time to compile, sign and publish every target of a revision.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800),
)
RECONCILE_SECONDS = prometheus_client.Histogram(
    "edgefleet_reconcile_duration_seconds",
    "Time of one reconcile of a ModelDeployment.",
    ["result"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
)
EVENTS = prometheus_client.Counter(
    "edgefleet_rollout_events_total",
    "Rollout transitions (RolloutStarted, StepCompleted, Promoted, RolloutAborted, ...).",
    ["reason"],
)
_PHASES = ("Pending", "Compiling", "Progressing", "Paused", "Healthy", "Degraded", "RolledBack", "Stalled")


def observe(namespace: str, deployment: str, status: modeldeployment.ModelDeploymentStatus) -> None:
    """Export a deployment's status."""
    step = status.current_step_index
    ROLLOUT_STEP.labels(namespace, deployment).set(-1 if step is None else step)
    counts = status.devices
    for state, value in (
        ("targeted", counts.targeted),
        ("updated", counts.updated),
        ("healthy", counts.healthy),
        ("failed", counts.failed),
    ):
        DEVICES.labels(namespace, deployment, state).set(value)
    for phase in _PHASES:
        PHASE.labels(namespace, deployment, phase).set(1 if status.phase == phase else 0)


def forget(namespace: str, deployment: str) -> None:
    """Drop the series of a deleted deployment."""
    for gauge, extra in (
        (ROLLOUT_STEP, [()]),
        (DEVICES, [(s,) for s in ("targeted", "updated", "healthy", "failed")]),
        (PHASE, [(p,) for p in _PHASES]),
    ):
        for labels in extra:
            try:
                gauge.remove(namespace, deployment, *labels)
            except KeyError:
                continue


__all__ = [
    "COMPILE_SECONDS",
    "DEVICES",
    "EVENTS",
    "PHASE",
    "RECONCILE_SECONDS",
    "ROLLOUT_STEP",
    "forget",
    "observe",
]
