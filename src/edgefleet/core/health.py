"""Health verdicts: is a freshly switched model behaving on live traffic? (pure)

A device records one :class:`Sample` per inference the model is answerable for (when it finished, how long it took,
whether it failed on a valid request, whether it made NaN/Inf out of finite inputs; a client's malformed request or
NaN input is not the model's failure, see ``docs/rollouts.md``, "What health counts") and evaluates the spec's
:class:`~edgefleet.api.modeldeployment.HealthSpec` over the samples of the sliding window. Only aggregates leave
this module: counts, percentiles, a verdict and a reason code.

Rules, in order:

1. ``failOnNonFinite`` and any non-finite output in the window -> ``Unhealthy`` (``NonFiniteOutput``) at once; one
   NaN is proof enough, waiting for ``minSamples`` would only serve more of them.
2. fewer than ``minSamples`` samples -> ``Pending``.
3. error rate above ``maxErrorRate`` -> ``Unhealthy`` (``ErrorRate``).
4. p95 latency above ``latencyP95Ms`` -> ``Unhealthy`` (``LatencyP95``).
5. otherwise ``Healthy``.

Worked example: spec ``latencyP95Ms=50, minSamples=4, maxErrorRate=0.25, windowSeconds=60`` and samples
``(t=1, 10 ms), (t=2, 12 ms), (t=3, 11 ms), (t=4, 90 ms, error)`` at ``now=5``: 4 samples, 1 error (rate 0.25, not
above the limit); a failed inference's latency does not count, so the nearest-rank p95 is 12 ms and the verdict is
``Healthy``. The same fourth sample without the error makes the p95 90 ms > 50 ms: ``Unhealthy`` (``LatencyP95``).

A switched model is on *probation* for one window; what the verdict means for it is decided in
:mod:`edgefleet.core.probation`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

from edgefleet.api.modeldeployment import HealthSpec

VerdictName = Literal["Pending", "Healthy", "Unhealthy"]


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """One finished inference: ``at`` in seconds on the evaluating clock, latency in milliseconds."""

    at: float
    latency_ms: float
    error: bool = False
    non_finite: bool = False


@dataclasses.dataclass(frozen=True)
class HealthVerdict:
    """The aggregate of one window. ``code`` is a CamelCase reason, ``reason`` the sentence a person reads."""

    verdict: VerdictName
    samples: int
    errors: int
    non_finite: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    code: str | None = None
    reason: str | None = None


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values, ``None`` when empty (pure).

    >>> percentile([10.0, 11.0, 12.0, 90.0], 0.95)
    90.0
    >>> percentile([10.0, 11.0, 12.0, 90.0], 0.5)
    11.0
    """
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def in_window(samples: Sequence[Sample], spec: HealthSpec, now: float) -> list[Sample]:
    """The samples inside ``(now - windowSeconds, now]`` (pure)."""
    start = now - spec.window_seconds
    return [s for s in samples if start < s.at <= now]


def evaluate(samples: Sequence[Sample], spec: HealthSpec, now: float) -> HealthVerdict:
    """Verdict of ``spec`` over the samples of the window ending at ``now`` (pure).

    The module's worked example:

    >>> spec = HealthSpec(latency_p95_ms=50, min_samples=4, max_error_rate=0.25, window_seconds=60)
    >>> samples = [Sample(1, 10), Sample(2, 12), Sample(3, 11), Sample(4, 90, error=True)]
    >>> v = evaluate(samples, spec, now=5)
    >>> v.verdict, v.samples, v.errors, v.latency_p95_ms
    ('Healthy', 4, 1, 12)
    >>> evaluate([Sample(1, 10), Sample(2, 12), Sample(3, 11), Sample(4, 90)], spec, now=5).code
    'LatencyP95'
    """
    window = in_window(samples, spec, now)
    count = len(window)
    errors = sum(1 for s in window if s.error)
    non_finite = sum(1 for s in window if s.non_finite)
    latencies = sorted(s.latency_ms for s in window if not s.error)
    p50 = percentile(latencies, 0.50)
    p95 = percentile(latencies, 0.95)

    def verdict(name: VerdictName, code: str | None = None, reason: str | None = None) -> HealthVerdict:
        return HealthVerdict(name, count, errors, non_finite, p50, p95, code, reason)

    if spec.fail_on_non_finite and non_finite:
        return verdict(
            "Unhealthy", "NonFiniteOutput", f"{non_finite} of {count} inferences produced NaN or Inf outputs"
        )
    if count < spec.min_samples:
        return verdict("Pending")
    rate = errors / count
    if rate > spec.max_error_rate:
        return verdict(
            "Unhealthy",
            "ErrorRate",
            f"error rate {rate:.3f} ({errors}/{count}) is above maxErrorRate {spec.max_error_rate}",
        )
    if p95 is not None and p95 > spec.latency_p95_ms:
        return verdict(
            "Unhealthy", "LatencyP95", f"p95 latency {p95:.2f} ms is above latencyP95Ms {spec.latency_p95_ms}"
        )
    return verdict("Healthy")


__all__ = ["HealthVerdict", "Sample", "VerdictName", "evaluate", "in_window", "percentile"]
