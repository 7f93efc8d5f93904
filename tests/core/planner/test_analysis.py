"""Evidence and analysis verdicts: table tests."""

from __future__ import annotations

import datetime as dt

import pytest

from edgefleet.api import edgedevice, modeldeployment
from edgefleet.core.planner import analysis, availability, devices
from edgefleet.testing import rollout as sim

T0 = sim.T0
STEP = modeldeployment.AnalysisStep(duration_seconds=60, min_samples=500)
POLICY = modeldeployment.RolloutSpec(steps=[{"setWeight": 100}], success_threshold=0.8, progress_deadline_seconds=120)


@pytest.mark.parametrize(
    ("healthy", "failed", "silent", "samples", "elapsed", "verdict", "wake"),
    [
        (10, 0, 0, 600, 61, "Passed", None),  # window over, enough samples, all healthy
        (10, 0, 0, 600, 30, "Waiting", 10.0),  # window still open: poll
        (10, 0, 0, 600, 55, "Waiting", 5.0),  # window ends in 5 s: look again then
        (10, 0, 0, 400, 61, "Waiting", 10.0),  # 400 < 500 samples
        (8, 2, 0, 600, 61, "Passed", None),  # 80 % meets the threshold
        (7, 0, 3, 600, 61, "Waiting", 10.0),  # 70 %: wait for the deadline
        (7, 0, 3, 600, 180, "Failed", None),  # past window + progressDeadlineSeconds
        (0, 0, 0, 0, 61, "Passed", None),  # no device takes the canary at this weight
        (0, 0, 0, 0, 59, "Waiting", 1.0),
    ],
)
def test_judge(
    healthy: int, failed: int, silent: int, samples: int, elapsed: float, verdict: str, wake: float | None
) -> None:
    evidence = analysis.Evidence(
        healthy + failed + silent, healthy, tuple(f"f{i}" for i in range(failed)), ("s",) * silent, samples
    )
    judgement = analysis.judge(STEP, POLICY, evidence, T0, T0 + dt.timedelta(seconds=elapsed))
    assert judgement.verdict == verdict and judgement.wake_in == wake
    if verdict == "Failed":
        assert "within 120s after its window (min 500 samples)" in judgement.detail
    if verdict == "Waiting":
        assert judgement.detail == f"analysing: {healthy}/{evidence.updated} healthy, {samples}/500 samples"


@pytest.mark.parametrize(
    ("updated", "failed", "threshold", "too_many"),
    [(10, 2, 0.8, False), (10, 3, 0.8, True), (1, 1, 1.0, True), (1, 0, 1.0, False), (3, 0, 0.5, False)],
)
def test_too_many_failures(updated: int, failed: int, threshold: float, too_many: bool) -> None:
    evidence = analysis.Evidence(updated, updated - failed, ("x",) * failed, (), 0)
    assert analysis.too_many_failures(evidence, threshold) is too_many


def test_evidence_lists_at_most_eight_names() -> None:
    evidence = analysis.Evidence(10, 0, tuple(f"d{i}" for i in range(10)), (), 0)
    assert evidence.text(0.8).endswith("failed: d0, d1, d2, d3, d4, d5, d6, d7 and 2 more")


def _device(name: str, report: edgedevice.ModelStatus | None, fresh: bool = True) -> devices.DeviceView:
    return devices.DeviceView(name, {}, True, False, None, report, False, fresh)


def test_gather_sorts_updated_devices_into_healthy_failed_and_silent() -> None:
    template = sim.template(sim.spec())
    entry = template.desired_for(sim.NAME, {})
    assert entry is not None
    revision = entry.revision

    def active(verdict: str) -> edgedevice.ModelStatus:
        health = edgedevice.HealthSummary(verdict=verdict, samples=50, reason="p95" if verdict != "Healthy" else None)
        return edgedevice.ModelStatus(name=entry.name, state="Active", active_revision=revision, health=health)

    rolled = edgedevice.ModelStatus(
        name=entry.name, state="RolledBack", desired_digest=entry.artifact.digest, message="smoke test failed"
    )
    views = [
        _device("healthy", active("Healthy")),
        _device("stale", active("Healthy"), fresh=False),  # a verdict too old to count is silence
        _device("unhealthy", active("Unhealthy")),
        _device("rolled", rolled),
        _device("installing", None),
        _device("elsewhere", active("Healthy")),  # not asked to run the canary: not updated
    ]
    ledger = availability.Ledger(views, limit=10, window_open=True)
    for view in views[:-1]:
        assert ledger.switch(view, entry)
    evidence = analysis.gather(ledger, views, revision)
    assert (evidence.updated, evidence.healthy, evidence.samples) == (5, 1, 150)
    assert evidence.failed == ("unhealthy (p95)", "rolled (smoke test failed)")
    assert evidence.silent == ("stale", "installing")
