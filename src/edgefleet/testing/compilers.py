"""Compilers for tests, referenced as ``edgefleet.testing.compilers:NAME`` through ``EDGEFLEET_COMPILER``."""

from __future__ import annotations

from edgefleet.compiler import jobs
from edgefleet.core import errors


def gate_fails(request: jobs.CompileRequest) -> jobs.CompiledModel:
    """Every variant misses the accuracy budget, as a real compiler reports it: with the measured numbers."""
    raise errors.InvalidSpecError(
        f"target {request.target}: no variant within the accuracy budget (max drop 0.010): "
        "int8 drop 0.034, fp16 drop 0.012",
        errors.Reason.ACCURACY_GATE_FAILED,
    )
