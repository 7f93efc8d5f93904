"""Compile memory: the budget a compile plans within, how much it used, and the supervised process that enforces it.

Where the memory of a compile goes, and how each part is bounded by :func:`plan`:

* **calibration**: onnxruntime's calibrators run a copy of the model that returns *every* intermediate tensor and
  keep them for all samples before reducing them to ranges or histograms (13.9 GB for 64 samples of a 48x320 text
  recogniser). The compiler feeds them in strides (``CalibStridedMinMax``: ranges and histograms are merged
  stride by stride), each stride sized from the measured bytes of one sample's intermediate tensors
  (:func:`activation_bytes`) so that it fits half the budget;
* **evaluation**: the evaluation set runs in chunks sized the same way (a symbolic batch axis otherwise runs 64
  samples at once), and a candidate's outputs are dropped once its fidelity is computed;
* **models**: the candidates' bytes; a candidate that fails the gate drops them.

The stride and chunk depend only on the model, its inputs and the budget, never on how much memory happens to be in
use, so equal inputs still give byte-identical bundles.

Peak RSS is read from the kernel (``VmHWM`` of ``/proc/self/status``, reset at the start of a compile by writing
``5`` to ``/proc/self/clear_refs``). :func:`run_bounded` enforces the budget: it runs a compile in a child process,
samples the child's resident set every 50 ms, and kills it when it exceeds the budget, raising
``InvalidSpecError(reason=CompileMemoryExceeded)`` that names the budget, what was resident and the step the
compile was at (a sampled bound: leave the pod's limit ~20 % above the budget).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import pathlib
import signal
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edgefleet.core import errors

DEFAULT_BUDGET_BYTES = 3 * 1024**3
MIN_BUDGET_BYTES = 256 * 1024**2
# The share of the budget one calibration stride or evaluation chunk may take; the rest holds the interpreter,
# onnxruntime, the models and their sessions. Each stride costs about 3x its tensors (the session's outputs, the
# calibrator's merged copies and its reductions), each chunk about 1.5x.
CALIBRATION_SHARE = 0.5
CALIBRATION_OVERHEAD = 3.0
EVALUATION_OVERHEAD = 1.5
POLL_SECONDS = 0.05

Array = np.ndarray[Any, Any]


def parse_bytes(text: str) -> int:
    """``"3Gi"``, ``"512Mi"``, ``"2G"`` or a plain number of bytes (pure); raises ValueError.

    >>> parse_bytes("3Gi"), parse_bytes("512Mi"), parse_bytes("1000000")
    (3221225472, 536870912, 1000000)
    """
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "K": 1000, "M": 1000**2, "G": 1000**3}
    value = text.strip()
    for suffix, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if value.endswith(suffix):
            return int(float(value[: -len(suffix)]) * factor)
    return int(value)


def format_bytes(count: float) -> str:
    """A byte count for people (pure).

    >>> format_bytes(3 * 1024**3), format_bytes(1536 * 1024)
    ('3.00 GiB', '1.50 MiB')
    """
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(count) >= size:
            return f"{count / size:.2f} {unit}"
    return f"{int(count)} B"


def _status_field(path: pathlib.Path, field: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes(pid: int | None = None) -> int | None:
    """Resident set size of ``pid`` (this process by default), from ``/proc``; ``None`` where unavailable."""
    return _status_field(pathlib.Path(f"/proc/{pid or 'self'}/status"), "VmRSS")


def reset_peak() -> None:
    """Start measuring the peak resident set from now (Linux ``clear_refs``; a no-op where unsupported)."""
    with contextlib.suppress(OSError):
        pathlib.Path("/proc/self/clear_refs").write_text("5")


def peak_bytes() -> int | None:
    """Peak resident set since :func:`reset_peak` (``VmHWM``), or ``None`` where unavailable."""
    return _status_field(pathlib.Path("/proc/self/status"), "VmHWM")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a compile splits its work to stay within ``budget_bytes``."""

    budget_bytes: int
    activation_bytes: int
    calibration_stride: int
    evaluation_chunk: int

    def describe(self) -> str:
        """One line for logs and reports."""
        return (
            f"memory budget {format_bytes(self.budget_bytes)}: {format_bytes(self.activation_bytes)} of intermediate "
            f"tensors per sample, calibration in strides of {self.calibration_stride}, "
            f"evaluation in chunks of {self.evaluation_chunk}"
        )


def plan(budget_bytes: int, activation: int, calibration_samples: int, fixed_batch: int | None) -> Plan:
    """The calibration stride and evaluation chunk for ``activation`` bytes of tensors per sample (pure).

    Both are powers of two (so they do not wobble with the budget), at least 1, at most the calibration sample count
    (stride) or 64 (chunk); a fixed batch size fixes the chunk.

    >>> plan(3 * 1024**3, 200 * 1024**2, 64, None)
    Plan(budget_bytes=3221225472, activation_bytes=209715200, calibration_stride=2, evaluation_chunk=4)
    """
    per_sample = max(activation, 1)
    share = budget_bytes * CALIBRATION_SHARE
    stride = _power_of_two(share / (CALIBRATION_OVERHEAD * per_sample), max(calibration_samples, 1))
    chunk = fixed_batch or _power_of_two(share / (EVALUATION_OVERHEAD * per_sample), 64)
    return Plan(budget_bytes, activation, stride, chunk)


def _power_of_two(limit: float, cap: int) -> int:
    value = 1
    while value * 2 <= min(limit, cap):
        value *= 2
    return value


def activation_bytes(run_all: Callable[[Mapping[str, Array]], list[Array]], sample: Mapping[str, Array]) -> int:
    """Bytes of every tensor one sample produces, measured by ``run_all`` (a session returning all of them)."""
    outputs = run_all(sample)
    return int(sum(np.asarray(o).nbytes for o in outputs) + sum(np.asarray(v).nbytes for v in sample.values()))


# -- the supervised compile ----------------------------------------------------------------------------------------


def _child(function: Callable[..., Any], args: tuple[Any, ...], conn: multiprocessing.connection.Connection) -> None:
    def progress(message: str) -> None:
        conn.send(("progress", message))

    reset_peak()
    try:
        result = function(*args, progress=progress)
    except errors.EdgefleetError as exc:
        conn.send(("error", exc))
    except Exception as exc:  # anything else the compiler raised: a bug, reported with its type
        conn.send(("error", errors.InvalidSpecError(f"{type(exc).__name__}: {exc}", errors.Reason.COMPILER_ERROR)))
    else:
        conn.send(("result", result))
    conn.close()


def run_bounded(
    function: Callable[..., Any],
    args: tuple[Any, ...],
    budget_bytes: int,
    *,
    what: str,
    remedy: str,
    poll_seconds: float = POLL_SECONDS,
) -> tuple[Any, int]:
    """Run ``function(*args, progress=...)`` in a spawned child within ``budget_bytes`` of resident memory.

    Returns ``(result, peak sampled RSS)``. ``function`` must be importable by reference (spawn) and raise only
    EdgefleetErrors for known failures. Over budget the child is killed and ``InvalidSpecError(CompileMemoryExceeded)``
    says so (``what`` names the compile, ``remedy`` what to change); a child that dies otherwise is a
    ``TransientError``.
    """
    context = multiprocessing.get_context("spawn")
    parent, child_end = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(function, args, child_end), daemon=True)
    process.start()
    child_end.close()
    peak = 0
    step = "starting"
    outcome: tuple[str, Any] | None = None
    try:
        while outcome is None:
            if parent.poll(poll_seconds):
                try:
                    kind, value = parent.recv()
                except EOFError:
                    break
                if kind == "progress":
                    step = str(value)
                    continue
                outcome = (kind, value)
                break
            resident = rss_bytes(process.pid) or 0
            peak = max(peak, resident)
            if resident > budget_bytes:
                os.kill(process.pid or 0, signal.SIGKILL)
                process.join()
                raise errors.InvalidSpecError(
                    f"{what} exceeded its memory budget of {format_bytes(budget_bytes)} "
                    f"({format_bytes(resident)} resident while {step.lower()}); the compile was stopped. {remedy}",
                    errors.Reason.COMPILE_MEMORY_EXCEEDED,
                )
            if not process.is_alive() and not parent.poll():
                break
    finally:
        parent.close()
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()
    if outcome is None:
        code = process.exitcode
        cause = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        raise errors.TransientError(f"the compiler process of {what} died ({cause}) while {step.lower()}", delay=30.0)
    kind, value = outcome
    if kind == "error":
        raise value
    return value, peak


__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "MIN_BUDGET_BYTES",
    "Plan",
    "activation_bytes",
    "format_bytes",
    "parse_bytes",
    "peak_bytes",
    "plan",
    "reset_peak",
    "rss_bytes",
    "run_bounded",
]
