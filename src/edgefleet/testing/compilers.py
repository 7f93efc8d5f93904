"""Compilers for tests, referenced as ``edgefleet.testing.compilers:NAME`` through ``EDGEFLEET_COMPILER``."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edgefleet.compiler import jobs
from edgefleet.core import errors


def gate_fails(request: jobs.CompileRequest) -> jobs.CompiledModel:
    """Every variant misses the accuracy budget, as a real compiler reports it: with the measured numbers."""
    raise errors.InvalidSpecError(
        f"target {request.target}: no variant within the accuracy budget (max drop 0.010): "
        "int8 drop 0.034, fp16 drop 0.012",
        errors.Reason.ACCURACY_GATE_FAILED,
    )


def memory_hog(request: jobs.CompileRequest, progress: Any = None) -> jobs.CompiledModel:
    """Touch memory in 64 MiB steps until well past the request's budget (as a calibrator holding every tensor of
    every sample would), naming its step like the real compiler does."""
    held = []
    for step in range(4 * request.memory_budget_bytes // (64 * 1024**2) + 4):
        if progress is not None:
            progress(f"Calibrating step {step}")
        held.append(np.ones(64 * 1024**2, dtype=np.uint8))  # written, so resident
        time.sleep(0.02)
    raise AssertionError(f"held {len(held)} chunks without being stopped")
