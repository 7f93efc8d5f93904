"""The serving registry: which session answers for each model name, and the health samples it produces.

A request takes a reference to the current :class:`Loaded` entry and keeps it until it is answered; a switch or
rollback only replaces the dictionary entry. In-flight requests therefore finish on the old session (which is
freed when the last of them drops it) and new requests go to the new one: a hot swap cannot fail a request.

Inference runs on a small thread pool (onnxruntime releases the GIL), so the event loop keeps accepting requests
and the health monitor keeps running while a slow model computes. Every finished inference becomes a
:class:`~edgefleet.core.health.Sample` attributed to the digest that produced it, so samples of the old version that
finish after a switch never count against the new one. Only timings, counts and error classes are recorded; the
tensors themselves are dropped as soon as the response is written.

What counts against a model (``docs/rollouts.md``, "What health counts"): a failed inference on a request that
matched the model's signature, a NaN/Inf output computed from finite inputs, and latency. A client error (unknown
input, wrong shape or dtype, onnxruntime's ``InvalidArgument``) records no sample; a NaN/Inf output from an input
that already held NaN/Inf is a sample, but not a non-finite one.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import prometheus_client

from edgefleet.adapters import onnx_session
from edgefleet.api.modeldeployment import HealthSpec
from edgefleet.core import health

MAX_SAMPLES = 200_000
# Models whose recent inferences take less than this run on the event loop itself: handing them to the pool
# costs more (thread wake-up, future, callback) than the inference, and they cannot stall the loop noticeably.
INLINE_BELOW_MS = 0.25
INLINE_MAX_ELEMENTS = 4096  # ... and only for small inputs: a large batch goes to the pool whatever the model


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A model ready to serve."""

    name: str
    version: str
    digest: str
    revision: str
    runtime: onnx_session.ModelRuntime
    health: HealthSpec


class Recorder:
    """Samples of one (model, digest) pair, oldest first, bounded."""

    def __init__(self) -> None:
        self.samples: collections.deque[health.Sample] = collections.deque(maxlen=MAX_SAMPLES)
        self.total = 0

    def record(self, sample: health.Sample) -> None:
        self.samples.append(sample)
        self.total += 1

    def prune(self, before: float) -> None:
        """Drop samples older than ``before`` (keeps evaluation O(window))."""
        while self.samples and self.samples[0].at <= before:
            self.samples.popleft()


class Metrics:
    """Prometheus metrics: metadata only (model name, version, outcome class, latency)."""

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self.latency = prometheus_client.Histogram(
            "edgefleet_inference_seconds",
            "Inference latency on the device.",
            ["model", "version"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.requests = prometheus_client.Counter(
            "edgefleet_inference_requests",
            "Inference requests by outcome class.",
            ["model", "version", "outcome"],
            registry=self.registry,
        )
        self.switches = prometheus_client.Counter(
            "edgefleet_model_switches", "Model switches by kind.", ["model", "kind"], registry=self.registry
        )


@dataclasses.dataclass(frozen=True)
class Result:
    """What a prediction returns: which model answered and its outputs."""

    model: Loaded
    outputs: dict[str, np.ndarray[Any, Any]]


class Registry:
    """Model name -> serving session, plus per-digest health recorders."""

    def __init__(
        self,
        *,
        workers: int = 2,
        clock: Callable[[], float] = time.monotonic,
        executor: concurrent.futures.ThreadPoolExecutor | None = None,
    ) -> None:
        """``executor``: a pool shared with other registries (a process simulating many devices); it is then the
        owner's to shut down, not this registry's."""
        self.clock = clock
        self._models: dict[str, Loaded] = {}
        self._recorders: dict[tuple[str, str], Recorder] = {}
        self._owns_executor = executor is None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="infer"
        )
        self.metrics = Metrics()
        self.alarm = asyncio.Event()  # set on an error or non-finite output: wakes the health monitor at once
        self._recent_ms: dict[str, float] = {}  # digest -> moving average of inference latency
        self.ready = False

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """The inference pool (also used to load sessions off the event loop)."""
        return self._executor

    @property
    def metrics_registry(self) -> prometheus_client.CollectorRegistry:
        return self.metrics.registry

    def served(self) -> list[Loaded]:
        return self.all()

    def get(self, name: str) -> Loaded | None:
        return self._models.get(name)

    def all(self) -> list[Loaded]:
        return [self._models[k] for k in sorted(self._models)]

    def swap(self, loaded: Loaded, kind: str = "switch") -> Loaded | None:
        """Serve ``loaded`` for its name from now on; returns the entry it replaced."""
        old = self._models.get(loaded.name)
        self._recorders[(loaded.name, loaded.digest)] = Recorder()
        self._models[loaded.name] = loaded
        if old is not None and old.digest != loaded.digest:
            self._recorders.pop((old.name, old.digest), None)
            self._recent_ms.pop(old.digest, None)
        self.metrics.switches.labels(loaded.name, kind).inc()
        return old

    def remove(self, name: str) -> Loaded | None:
        """Stop serving ``name``; in-flight requests still finish on their session."""
        old = self._models.pop(name, None)
        if old is not None:
            self._recorders.pop((old.name, old.digest), None)
        return old

    def recorder(self, name: str) -> Recorder | None:
        loaded = self._models.get(name)
        return self._recorders.get((name, loaded.digest)) if loaded else None

    def _infer(self, loaded: Loaded, raw: Mapping[str, Any]) -> tuple[dict[str, np.ndarray[Any, Any]], float, bool]:
        """Outputs, latency in ms, and whether the inputs were finite."""
        feeds = {name: loaded.runtime.coerce(name, value) for name, value in raw.items()}
        start = time.perf_counter()
        outputs = loaded.runtime.run(feeds)
        return outputs, (time.perf_counter() - start) * 1000.0, _all_finite(feeds.values())

    async def predict(self, name: str, raw: Mapping[str, Any]) -> Result:
        """Run one inference on the current model of ``name``; raises KeyError for an unknown name."""
        loaded = self._models[name]
        loop = asyncio.get_running_loop()
        recorder = self._recorders.get((name, loaded.digest))
        recent = self._recent_ms.get(loaded.digest)
        try:
            small = sum(int(np.size(v)) for v in raw.values()) <= INLINE_MAX_ELEMENTS
            if small and recent is not None and recent < INLINE_BELOW_MS:
                outputs, latency_ms, finite_in = self._infer(loaded, raw)
            else:
                outputs, latency_ms, finite_in = await loop.run_in_executor(self._executor, self._infer, loaded, raw)
        except onnx_session.InferenceError as exc:
            self.metrics.requests.labels(name, loaded.version, exc.kind).inc()
            # A client's mistake (unknown input, wrong shape or dtype) says nothing about the model: no sample.
            if recorder is not None and not exc.client_error:
                recorder.record(health.Sample(self.clock(), 0.0, error=True))
                self.alarm.set()
            raise
        self._recent_ms[loaded.digest] = latency_ms if recent is None else 0.9 * recent + 0.1 * latency_ms
        # NaN or Inf out of NaN or Inf in is the client's doing: only a non-finite output from finite inputs counts.
        non_finite = finite_in and not _all_finite(outputs.values())
        if recorder is not None:
            recorder.record(health.Sample(self.clock(), latency_ms, non_finite=non_finite))
            if non_finite:
                self.alarm.set()
        self.metrics.latency.labels(name, loaded.version).observe(latency_ms / 1000.0)
        self.metrics.requests.labels(name, loaded.version, "NonFinite" if non_finite else "OK").inc()
        return Result(loaded, outputs)

    def shutdown(self) -> None:
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _all_finite(arrays: Any) -> bool:
    for array in arrays:
        if np.issubdtype(array.dtype, np.inexact) and not bool(np.all(np.isfinite(array))):
            return False
    return True


__all__ = ["Loaded", "Metrics", "Recorder", "Registry", "Result"]
