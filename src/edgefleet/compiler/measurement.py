"""Running candidates with onnxruntime: evaluation outputs and interleaved latency (adapter).

Latency is measured the way a device runs the model: batch 1, a fixed number of intra-op threads, sequential
execution, full online graph optimisation. The compile host is shared with other work, so candidates are
measured *interleaved*: every round runs each session a few times in a rotating order, so a burst of background
load hits all candidates alike instead of penalising whichever happened to run during it. Each candidate keeps one
figure per round, the 20th percentile of its runs there (the runs least disturbed by other processes), so the
selection rule compares candidates round by round.

A session that cannot be created or run raises ``InvalidSpecError(reason=Reason.INVALID_INPUT)`` saying why
(onnxruntime's own exception types stay in here, STYLE rule 5).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from edgefleet.compiler import selection
from edgefleet.core import errors

Array = np.ndarray[Any, Any]


def _invalid_input(message: str) -> errors.InvalidSpecError:
    return errors.InvalidSpecError(message, errors.Reason.INVALID_INPUT)


@dataclasses.dataclass(frozen=True)
class IOSpec:
    """One model input or output: name, numpy dtype name and shape (symbolic dims as strings)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]


_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def session(model: bytes, threads: int = 1, providers: Sequence[str] = ("CPUExecutionProvider",)) -> Any:
    """An onnxruntime session configured like a device's: pinned threads, sequential, all optimisations."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model, options, providers=list(providers))
    except Exception as exc:  # onnxruntime's own exception types
        raise _invalid_input(f"onnxruntime cannot load the model: {str(exc).splitlines()[0]}") from exc


def signature(sess: Any) -> tuple[list[IOSpec], list[IOSpec]]:
    """Inputs and outputs of a session as :class:`IOSpec` lists."""

    def spec(arg: Any) -> IOSpec:
        dims = tuple(d if isinstance(d, int) else str(d) if d is not None else "?" for d in arg.shape)
        return IOSpec(arg.name, _ORT_TYPES.get(arg.type, arg.type), dims)

    return [spec(i) for i in sess.get_inputs()], [spec(o) for o in sess.get_outputs()]


def batch_size(inputs: Sequence[IOSpec]) -> int | None:
    """Fixed batch size of the model (first dim of the first input), or ``None`` when it is symbolic."""
    if not inputs or not inputs[0].shape:
        return None
    first = inputs[0].shape[0]
    return first if isinstance(first, int) and first > 0 else None


def run_dataset(sess: Any, data: Mapping[str, Array], chunk: int = 64) -> list[Array]:
    """Run every sample of ``data`` (batch-first arrays by input name); outputs concatenated on axis 0."""
    inputs, _ = signature(sess)
    names = [i.name for i in inputs]
    count = len(next(iter(data.values())))
    fixed = batch_size(inputs)
    step = fixed or chunk
    if fixed is not None and count % fixed:
        raise _invalid_input(f"{count} samples do not split into the model's fixed batch size {fixed}")
    parts: list[list[Array]] = []
    try:
        for start in range(0, count, step):
            feed = {n: data[n][start : start + step] for n in names}
            parts.append([np.asarray(o) for o in sess.run(None, feed)])
    except Exception as exc:  # onnxruntime's own exception types
        raise _invalid_input(f"inference failed: {str(exc).splitlines()[0]}") from exc
    return [np.concatenate([p[k] for p in parts], axis=0) for k in range(len(parts[0]))]


def latencies(
    sessions: Mapping[str, Any],
    feed: Mapping[str, Array],
    rounds: int = 7,
    round_seconds: float = 0.03,
    min_runs: int = 3,
    max_runs: int = 400,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, selection.Latency]:
    """Interleaved batch-1 latency of each session on ``feed``, in milliseconds.

    After a warm-up that also estimates each session's run time, every round runs each session (in an order
    rotating per round) for about ``round_seconds`` (between ``min_runs`` and ``max_runs`` runs), so fast models
    get enough runs for a stable median and slow ones (a 480x640 detector takes 0.2-1 s per run) stay bounded.
    """
    names = sorted(sessions)
    samples: dict[str, list[float]] = {n: [] for n in names}
    medians: dict[str, list[float]] = {n: [] for n in names}
    runs: dict[str, int] = {}
    try:
        for name in names:
            times = []
            for _ in range(3):
                start = clock()
                sessions[name].run(None, dict(feed))
                times.append(clock() - start)
                if sum(times) > 1.0:  # a slow model: two runs warm it up and say how slow
                    break
            per_run = max(float(np.median(times[1:] or times)), 1e-6)
            runs[name] = int(min(max_runs, max(min_runs, round_seconds / per_run)))
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                run = sessions[name].run
                times = []
                for _ in range(runs[name]):
                    start = clock()
                    run(None, feed)
                    times.append((clock() - start) * 1000.0)
                samples[name].extend(times)
                # The round's figure is its fastest fifth: on a shared host the slow runs are the ones another
                # process preempted, and the 20th percentile keeps the paired ratios steady where the median swings.
                medians[name].append(float(np.percentile(times, 20)))
    except Exception as exc:  # onnxruntime's own exception types
        raise _invalid_input(f"inference failed while timing: {str(exc).splitlines()[0]}") from exc
    return {
        n: selection.Latency(
            p50=float(np.percentile(samples[n], 50)),
            p95=float(np.percentile(samples[n], 95)),
            rounds=tuple(medians[n]),
        )
        for n in names
    }
