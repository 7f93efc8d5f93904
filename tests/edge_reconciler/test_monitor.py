"""The device's probation state and its one prune-then-evaluate path (edgefleet.edge_reconciler.monitor)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest

from edgefleet.adapters import onnx_session
from edgefleet.api.edgedevice import ArtifactRef, DesiredModel, EdgeDeviceSpec
from edgefleet.api.modeldeployment import HealthSpec
from edgefleet.core import health
from edgefleet.edge_reconciler import monitor, serving, state

SPEC = HealthSpec(latency_p95_ms=50, max_error_rate=0.0, min_samples=2, window_seconds=10)
D1, D2 = (f"sha256:{i * 64}" for i in "12")
V1 = state.SlotRecord(digest=D1, version="1.0.0", revision="r")
V2 = state.SlotRecord(digest=D2, version="2.0.0", revision="r")


def loaded(name: str, digest: str) -> serving.Loaded:
    # The monitor never runs the model: no onnxruntime session is needed.
    return serving.Loaded(name, "2.0.0", digest, "r", cast(onnx_session.ModelRuntime, None), SPEC)


class Device:
    """A registry serving ``demo`` and ``other``, and a journal with ``demo`` on probation."""

    def __init__(self, registry: serving.Registry) -> None:
        self.registry = registry
        ref = ArtifactRef(uri="http://store/demo", digest=D2, size_bytes=1, precision="fp32")
        models = [DesiredModel(name=n, deployment=n, version="2.0.0", revision="r", artifact=ref, health=SPEC)
                  for n in ("demo", "other")]  # fmt: skip
        record = state.ModelRecord(name="demo", active="b", slots={"a": V1, "b": V2}, probation_since=0.0)
        self.journal = state.Journal(spec=EdgeDeviceSpec(models=models)).with_model(record)
        for name in ("demo", "other"):
            registry.swap(loaded(name, D2))
        self.monitor = monitor.HealthMonitor(registry, lambda: self.journal)

    def record(self, name: str, *samples: health.Sample) -> None:
        recorder = self.registry.recorder(name)
        assert recorder is not None
        for sample in samples:
            recorder.record(sample)


@pytest.fixture
def device() -> Iterator[Device]:
    registry = serving.Registry(workers=1)
    try:
        yield Device(registry)
    finally:
        registry.shutdown()


def test_evaluate_prunes_to_the_window(device: Device) -> None:
    device.record("demo", health.Sample(1.0, 500.0), health.Sample(2.0, 500.0), health.Sample(15.0, 5.0))
    verdict = device.monitor.evaluate("demo", 16.0)
    assert verdict is not None and verdict.samples == 1 and verdict.verdict == "Pending"
    recorder = device.registry.recorder("demo")
    assert recorder is not None and [s.at for s in recorder.samples] == [15.0]  # older samples were dropped
    assert device.monitor.evaluate("unknown", 16.0) is None


@pytest.mark.parametrize(
    ("samples", "now", "outcome", "detected_at"),
    [
        ([], 5.0, "watch", 5.0),
        ([health.Sample(1.0, 5.0), health.Sample(2.0, 5.0)], 5.0, "watch", 2.0),
        ([health.Sample(1.0, 5.0), health.Sample(2.0, 90.0)], 3.0, "rollback", 2.0),
        ([health.Sample(1.0, 5.0, error=True), health.Sample(2.0, 5.0)], 3.0, "rollback", 2.0),
        ([health.Sample(1.0, 5.0), health.Sample(2.0, 5.0)], 10.0, "confirm", 2.0),
    ],
)
def test_check_table(
    device: Device, samples: list[health.Sample], now: float, outcome: str, detected_at: float
) -> None:
    device.monitor.begin("demo", 0.0)
    device.record("demo", *samples)
    check = device.monitor.check("demo", now)
    assert check is not None
    assert (check.outcome, check.detected_at, check.record.name) == (outcome, detected_at, "demo")


def test_check_reuses_the_verdict_until_new_samples_arrive(device: Device) -> None:
    device.monitor.begin("demo", 0.0)
    device.record("demo", health.Sample(1.0, 90.0), health.Sample(2.0, 90.0))
    first = device.monitor.check("demo", 3.0)
    assert first is not None and first.verdict.verdict == "Unhealthy"
    again = device.monitor.check("demo", 4.0)
    assert again is not None and again.verdict is first.verdict
    device.record("demo", health.Sample(4.5, 5.0))
    fresh = device.monitor.check("demo", 5.0)
    assert fresh is not None and fresh.verdict is not first.verdict and fresh.verdict.samples == 3


def test_check_stops_watching_once_the_journal_ends_probation(device: Device) -> None:
    device.monitor.begin("demo", 0.0, fallback=loaded("demo", D1))
    device.journal = device.journal.with_model(device.journal.models["demo"].off_probation())
    assert device.monitor.check("demo", 1.0) is None
    assert device.monitor.watched() == []


def test_begin_end_and_forget(device: Device) -> None:
    previous = loaded("demo", D1)
    device.registry.alarm.clear()
    device.monitor.begin("demo", 0.0, fallback=previous)
    assert device.registry.alarm.is_set()  # the monitor starts ticking at once
    assert device.monitor.watched() == ["demo"] and device.monitor.fallback["demo"] is previous
    device.monitor.end("demo")
    assert device.monitor.watched() == [] and "demo" not in device.monitor.fallback
    device.monitor.verdicts["demo"] = health.HealthVerdict("Healthy", 1, 0, 0, 1.0, 1.0)
    device.monitor.forget("demo")
    assert "demo" not in device.monitor.verdicts


def test_status_shows_the_probation_verdict_for_watched_models_and_fresh_ones_otherwise(device: Device) -> None:
    device.monitor.begin("demo", 0.0)
    device.record("demo", health.Sample(1.0, 90.0), health.Sample(2.0, 90.0))
    device.record("other", health.Sample(1.0, 5.0), health.Sample(2.0, 5.0))
    assert device.monitor.verdict_names(3.0) == {"demo": "Unhealthy", "other": "Healthy"}
    assert set(device.monitor.served_verdicts(3.0)) == {"other"}  # demo: no probation check ran yet
    check = device.monitor.check("demo", 3.0)
    assert check is not None
    verdicts = device.monitor.served_verdicts(3.0)
    assert verdicts["demo"] is check.verdict and verdicts["other"].verdict == "Healthy"
    device.registry.remove("other")
    assert set(device.monitor.served_verdicts(3.0)) == {"demo"}
