"""Compilers named by ``module:function``, and the unsigned result every compiler returns."""

from __future__ import annotations

import pickle
import sys

import pytest

from edgefleet.compiler import jobs, packager, pipeline, selection
from edgefleet.core import errors
from edgefleet.testing import compilers


def result(*candidates: selection.Candidate, task: str = "classification") -> jobs.CompiledModel:
    return jobs.CompiledModel(
        model=b"model",
        manifest={"model": {"task": task}},
        selected=candidates[-1],
        candidates=candidates,
        reason="why",
        detail="numbers",
        report="table",
    )


def cand(name: str, precision: selection.Precision, p50: float | None, **fidelity: float) -> selection.Candidate:
    latency = selection.Latency(p50, p50) if p50 is not None else None
    return selection.Candidate(name, precision, 100, 90, fidelity, latency)


def test_the_shipped_compilers_load_by_reference() -> None:
    assert jobs.load(jobs.OPTIMISING) is pipeline.compile_request
    assert jobs.load(jobs.PACKAGER) is packager.compile_fp32
    assert jobs.load("edgefleet.testing.compilers:gate_fails") is compilers.gate_fails


def test_references_from_before_the_move_still_load() -> None:
    assert jobs.load("edgefleet.adapters.compilers:optimise") is pipeline.compile_request
    assert jobs.load("edgefleet.adapters.passthrough:compile_fp32") is packager.compile_fp32


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("no.such.module:compile", "cannot be loaded"),
        ("edgefleet.compiler.jobs:missing", "cannot be loaded"),
        ("edgefleet.compiler.jobs:PACKAGER", "is not callable"),
    ],
)
def test_a_compiler_that_cannot_be_loaded_is_compiler_missing(reference: str, message: str) -> None:
    with pytest.raises(errors.InvalidSpecError, match=message) as info:
        jobs.load(reference)
    assert info.value.reason is errors.Reason.COMPILER_MISSING


def test_run_passes_the_accuracy_gate_failure_through_unchanged() -> None:
    with pytest.raises(errors.InvalidSpecError, match=r"int8 drop 0\.034") as info:
        jobs.run("edgefleet.testing.compilers:gate_fails", jobs.CompileRequest({}, "x86"))
    assert info.value.reason is errors.Reason.ACCURACY_GATE_FAILED


def test_the_result_reports_speedup_and_accuracy_delta_against_fp32() -> None:
    r = result(cand("fp32", "fp32", 2.0, top1Agreement=1.0), cand("int8", "int8", 0.5, top1Agreement=0.995))
    assert (r.precision, r.variant, r.reference.name) == ("int8", "int8", "fp32")
    assert r.speedup == 4.0
    assert r.accuracy_delta == pytest.approx(0.005)
    assert result(cand("fp32", "fp32", None, relativeError=0.0), task="regression").speedup is None


def test_a_single_candidate_is_its_own_reference() -> None:
    r = result(cand("fp32-passthrough", "fp32", 1.5, relativeError=0.0), task="regression")
    assert r.reference is r.selected and r.speedup == 1.0 and r.accuracy_delta == 0.0


def test_requests_and_results_cross_process_boundaries() -> None:
    r = result(cand("fp32", "fp32", 1.0, top1Agreement=1.0))
    assert pickle.loads(pickle.dumps(r)) == r
    request = jobs.CompileRequest({"model": {}}, "x86")
    assert pickle.loads(pickle.dumps(request)) == request


def test_the_operator_side_of_a_job_loads_no_onnx() -> None:
    """The operator imports jobs to hand work to its workers; onnx and onnxruntime stay in the workers."""
    import subprocess

    code = "import sys, edgefleet.compiler.jobs; print(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
