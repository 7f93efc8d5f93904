"""Timing compiled candidates on this device's own hardware, off the request path, for the operator's choice.

When the compile host is not of a device's hardware class, its timings say nothing about which variant is fastest
here (an INT8 variant 1.4x faster on a VNNI/AMX host can be slower than FP32 on an AVX2 one). The operator then
writes ``spec.benchmarks``: a few in-budget candidates of one revision. :class:`Benchmarker` handles each request
once:

1. download every candidate's bundle (bounded by its ``sizeBytes``) and verify it exactly as an install does
   (digest, signature, golden samples decoded); nothing is written to the A/B slots and nothing is served;
2. time the candidates interleaved on the first golden sample's inputs, ``rounds`` rounds, each round running every
   candidate in a rotating order, in one thread of its own at nice +10, so the inference pool keeps serving and
   the kernel prefers requests over the benchmark; the whole benchmark stops after ``budgetSeconds``
   (runs per round are sized from a warm-up so that it fits);
3. report the per-round medians, p50 and p95 in ``status.benchmarks`` (timings only: never inputs or outputs),
   and delete the downloads.

A request that fails (download, verification, a model that does not run) is reported ``Failed`` with the reason; the
operator then keeps its safe choice. Results are kept in memory: after a restart a still-present request runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle, onnx_session, protocols
from edgefleet.api.edgedevice import BenchmarkRequest, BenchmarkResult, BenchmarkTiming
from edgefleet.core import errors
from edgefleet.edge_reconciler import reporting

log = logging.getLogger(__name__)
NICE = 10
MAX_RUNS_PER_ROUND = 50


def timings(
    runners: Sequence[Callable[[], object]],
    rounds: int,
    budget_seconds: float,
    clock: Callable[[], float] = time.perf_counter,
) -> list[tuple[float, float, list[float]]]:
    """Interleaved batch-1 timings of ``runners``: ``(p50, p95, per-round figures)`` in ms each (blocking); a round's
    figure is the 20th percentile of its runs, as the compiler measures (:mod:`edgefleet.compiler.measurement`).

    One warm-up run each estimates the run time; then every round runs each runner (in an order rotating per round)
    as often as fits ``budget_seconds`` spread over the rounds (1 to :data:`MAX_RUNS_PER_ROUND` runs).
    """
    per_run = []
    for run in runners:
        start = clock()
        run()
        per_run.append(max(clock() - start, 1e-6))
    share = max(budget_seconds - sum(per_run), 0.0) / max(rounds * len(runners), 1)
    counts = [int(min(MAX_RUNS_PER_ROUND, max(1, share / t))) for t in per_run]
    samples: list[list[float]] = [[] for _ in runners]
    medians: list[list[float]] = [[] for _ in runners]
    deadline = clock() + budget_seconds
    for r in range(rounds):
        if r >= 3 and clock() > deadline:
            break  # the estimate was off: keep the rounds done (at least three)
        order = list(range(len(runners)))
        order = order[r % len(order) :] + order[: r % len(order)]
        for i in order:
            times = []
            for _ in range(counts[i]):
                start = clock()
                runners[i]()
                times.append((clock() - start) * 1000.0)
            samples[i].extend(times)
            medians[i].append(float(np.percentile(times, 20)))  # the round's least disturbed runs
    return [
        (float(np.percentile(s, 50)), float(np.percentile(s, 95)), m) for s, m in zip(samples, medians, strict=True)
    ]


def _low_priority() -> None:
    """Lower this thread's scheduling priority (Linux: a thread is a task ``setpriority`` accepts)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


class Benchmarker:
    """Runs the device's benchmark requests, one at a time, and hands results to the status reporter."""

    def __init__(
        self,
        *,
        root: Path,
        fetch: protocols.ArtifactFetch,
        trusted_keys: Sequence[ed25519.Ed25519PublicKey],
        reporter: reporting.StatusReporter,
        intra_op_threads: int = 1,
    ) -> None:
        self.root = root
        self.fetch = fetch
        self.trusted_keys = list(trusted_keys)
        self.reporter = reporter
        self.intra_op_threads = intra_op_threads
        self.done: dict[str, str] = {}  # request name -> revision handled

    async def handle(self, requests: Sequence[BenchmarkRequest]) -> None:
        """Run every request not handled yet; forget results of requests that left the spec."""
        wanted = {r.name for r in requests}
        for name in list(self.done):
            if name not in wanted:
                del self.done[name]
                self.reporter.forget_benchmark(name)
        for request in requests:
            if self.done.get(request.name) == request.revision:
                continue
            self.done[request.name] = request.revision
            self.reporter.benchmark(BenchmarkResult(name=request.name, revision=request.revision, state="Running"))
            result = await self.run(request)
            self.reporter.benchmark(result)

    async def run(self, request: BenchmarkRequest) -> BenchmarkResult:
        """Download, verify and time the request's candidates (see the module docstring)."""
        workdir = self.root / "benchmarks"
        paths: list[Path] = []
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            runtimes = []
            feed: dict[str, Any] | None = None
            for candidate in request.candidates:
                art = candidate.artifact
                path = workdir / f"{art.digest.replace(':', '-')}.part"
                paths.append(path)
                await self.fetch(art.uri, path, art.size_bytes)
                data = await asyncio.to_thread(path.read_bytes)
                opened = await asyncio.to_thread(bundle.open_bundle, data, self.trusted_keys, art.digest)
                samples = bundle.golden_samples(opened)
                runtime = await asyncio.to_thread(
                    onnx_session.ModelRuntime, opened.model, intra_op_threads=self.intra_op_threads
                )
                feed = feed if feed is not None else dict(samples.samples[0].inputs)
                runtimes.append(runtime)
            assert feed is not None
            inputs = feed

            def measure() -> list[tuple[float, float, list[float]]]:
                _low_priority()
                runners = [lambda rt=rt: rt.run(inputs) for rt in runtimes]
                return timings(runners, request.rounds, request.budget_seconds)

            measured = await asyncio.to_thread(measure)
        except (errors.EdgefleetError, OSError) as exc:
            log.warning("Failed benchmark request=%s revision=%s error=%s", request.name, request.revision, exc)
            return BenchmarkResult(
                name=request.name, revision=request.revision, state="Failed", message=str(exc)[:1024]
            )
        finally:
            for path in paths:
                path.unlink(missing_ok=True)
        log.info("Benchmarked candidates request=%s revision=%s", request.name, request.revision)
        return BenchmarkResult(
            name=request.name,
            revision=request.revision,
            state="Done",
            timings=[
                BenchmarkTiming(
                    variant=c.variant,
                    digest=c.artifact.digest,
                    p50_ms=round(p50, 4),
                    p95_ms=round(p95, 4),
                    rounds_ms=[round(r, 4) for r in rounds],
                )
                for c, (p50, p95, rounds) in zip(request.candidates, measured, strict=True)
            ],
        )


__all__ = ["Benchmarker", "timings"]
