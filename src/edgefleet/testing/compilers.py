"""Compilers for tests, referenced as ``edgefleet.testing.compilers:NAME`` through ``EDGEFLEET_COMPILER``."""

from __future__ import annotations

from edgefleet.core import compiling


def gate_fails(request: compiling.CompileRequest) -> compiling.CompileResult:
    """Every variant misses the accuracy budget, as a real compiler reports it: with the measured numbers."""
    raise compiling.AccuracyGateError(
        f"target {request.target}: no variant within the accuracy budget (max drop 0.010): "
        "int8 drop 0.034, fp16 drop 0.012"
    )
