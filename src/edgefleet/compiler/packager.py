"""The fp32 packager: a compiler that fetches the source model, verifies it and packages it unchanged.

It is the baseline the optimising compiler is compared against, and a fallback when compiling is unwanted
(``EDGEFLEET_COMPILER=edgefleet.compiler.packager:compile_fp32``). It still produces a complete bundle manifest: the
input/output signature read from the graph, golden samples (fixed pseudo-random inputs, seeded by the model digest,
and the outputs onnxruntime computes for them) for the device's smoke test, and measured size and latency. Its
result has one candidate, the source itself, which is also its own FP32 reference. Runs inside the compile worker
process.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

import numpy as np
import onnxruntime as ort

from edgefleet.api import modeldeployment
from edgefleet.compiler import goldens, jobs, measurement, selection, sources
from edgefleet.core import errors, golden

GOLDEN_SAMPLES = 2
VARIANT = "fp32-passthrough"
REASON = "packaged as is"
_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(bool)": np.bool_,
}


def _dims(shape: list[Any]) -> list[int | str]:
    return [d if isinstance(d, int) else str(d or "?") for d in shape]


def _sample(arg: Any, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    dtype = _DTYPES.get(arg.type)
    if dtype is None:
        raise errors.InvalidSpecError(
            f"input {arg.name} has unsupported type {arg.type}", errors.Reason.UNSUPPORTED_MODEL
        )
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in arg.shape]
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype is np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    return rng.integers(0, 10, shape).astype(dtype)


def compile_fp32(request: jobs.CompileRequest) -> jobs.CompiledModel:
    """Package the source model as fp32 for ``request.target`` (see the module docstring)."""
    spec = modeldeployment.ModelDeploymentSpec.model_validate(request.spec)
    target = next(t for t in spec.compile.targets if t.name == request.target)
    started = time.perf_counter()
    model = sources.fetch(spec.model.uri, spec.model.sha256)
    try:
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    except Exception as exc:
        message = f"{spec.model.uri}: not a loadable ONNX model: {exc}"
        raise errors.InvalidSpecError(message, errors.Reason.INVALID_MODEL) from exc
    rng = np.random.default_rng(int(spec.model.sha256[:16], 16))
    feeds = [{arg.name: _sample(arg, rng) for arg in session.get_inputs()} for _ in range(GOLDEN_SAMPLES)]
    timings = []
    for feed in feeds:
        began = time.perf_counter()
        session.run(None, feed)
        timings.append((time.perf_counter() - began) * 1000)
    stacked = {name: np.concatenate([f[name] for f in feeds], axis=0) for name in feeds[0]}
    inputs, _ = measurement.signature(session)
    recorded = goldens.record(model, stacked, inputs, GOLDEN_SAMPLES)
    goldens.check(model, recorded.samples, recorded.member, 1e-4, 1e-5)
    latency = selection.Latency(p50=float(np.percentile(timings, 50)), p95=float(np.percentile(timings, 95)))
    manifest = {
        "schemaVersion": 2,
        "model": {
            "name": spec.model.name,
            "version": spec.model.version,
            "task": spec.model.task,
            "sourceSha256": spec.model.sha256,
        },
        "target": {"name": target.name, "selector": target.selector.to_wire()},
        "variant": {"name": VARIANT, "precision": "fp32", "reason": REASON},
        "compileOptions": target.to_wire(),
        "io": {
            "inputs": [{"name": a.name, "dtype": a.type, "shape": _dims(a.shape)} for a in session.get_inputs()],
            "outputs": [{"name": a.name, "dtype": a.type, "shape": _dims(a.shape)} for a in session.get_outputs()],
        },
        "golden": {"member": golden.MEMBER, "samples": recorded.samples, "rtol": 1e-4, "atol": 1e-5},
        "measurements": {
            "sizeBytes": len(model),
            "latencyP50Ms": latency.p50,
            "latencyP95Ms": latency.p95,
            "fidelity": {"maxAbsDiff": 0.0},
        },
    }
    return _result(spec.model.task, model, manifest, recorded.member, latency, time.perf_counter() - started)


def _result(
    task: str, model: bytes, manifest: dict[str, Any], member: bytes, latency: selection.Latency, seconds: float
) -> jobs.CompiledModel:
    """The packaged source as the only candidate: identical to itself, timed on the golden samples."""
    fidelity = {"maxAbsError": 0.0, "relativeError": 0.0}
    if task == "classification":
        fidelity["top1Agreement"] = 1.0
    candidate = selection.Candidate(
        name=VARIANT,
        precision="fp32",
        size_bytes=len(model),
        compressed_bytes=len(zlib.compress(model, 6)),
        fidelity=fidelity,
        latency=latency,
        compile_seconds=seconds,
        lossy=False,
    )
    choice = selection.Choice(candidate, REASON, {VARIANT: selection.GateVerdict(True, REASON)}, f"{len(model)} bytes")
    return jobs.CompiledModel(
        model=model,
        manifest=manifest,
        selected=candidate,
        candidates=(candidate,),
        reason=choice.reason,
        detail=choice.detail,
        report=selection.format_report(selection.report_rows([candidate], choice)),
        golden=member,
    )


__all__ = ["compile_fp32"]
