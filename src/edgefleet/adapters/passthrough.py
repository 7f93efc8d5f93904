"""The fp32 packager: a compiler that fetches the source model, verifies it and packages it unchanged.

It is the baseline the optimising compiler is compared against, and a fallback when compiling is unwanted. It still
produces a complete bundle manifest: the input/output signature read from the graph, golden samples (fixed pseudo-random
inputs, seeded by the model digest, and the outputs onnxruntime computes for them) for the device's smoke test, and
measured size and latency. Runs inside the compile worker process.
"""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import onnxruntime as ort

from edgefleet.adapters import bundle
from edgefleet.api import modeldeployment
from edgefleet.core import compiling, errors

MAX_MODEL_BYTES = 1024**3
FETCH_TIMEOUT = 60.0
GOLDEN_SAMPLES = 2
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


def fetch(uri: str, sha256: str, limit: int = MAX_MODEL_BYTES) -> bytes:
    """Download ``uri`` (http/https) with a size limit and check its sha256; errors say which check failed."""
    if not uri.startswith(("http://", "https://")):
        raise errors.InvalidSpecError(f"{uri}: only http and https sources can be fetched", "SourceScheme")
    try:
        # The scheme was checked above, so urlopen cannot be pointed at file:// or other handlers.
        with urllib.request.urlopen(uri, timeout=FETCH_TIMEOUT) as response:
            data: bytes = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500:
            message = f"{uri}: HTTP {exc.code}; check spec.model.uri"
            raise errors.InvalidSpecError(message, "SourceMissing") from exc
        raise errors.TransientError(f"{uri}: HTTP {exc.code}", delay=30.0) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise errors.TransientError(f"{uri}: {exc}", delay=30.0) from exc
    if len(data) > limit:
        raise errors.InvalidSpecError(f"{uri}: larger than {limit} bytes", reason="SourceTooLarge")
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise errors.InvalidSpecError(
            f"{uri}: sha256 is {actual}, spec.model.sha256 says {sha256}; fix the digest or the file",
            reason="SourceDigestMismatch",
        )
    return data


def _dims(shape: list[Any]) -> list[int | str]:
    return [d if isinstance(d, int) else str(d or "?") for d in shape]


def _sample(arg: Any, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    dtype = _DTYPES.get(arg.type)
    if dtype is None:
        raise errors.InvalidSpecError(f"input {arg.name} has unsupported type {arg.type}", "UnsupportedModel")
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in arg.shape]
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype is np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    return rng.integers(0, 10, shape).astype(dtype)


def compile_fp32(request: compiling.CompileRequest) -> compiling.CompileResult:
    """Package the source model as fp32 for ``request.target`` (see the module docstring)."""
    spec = modeldeployment.ModelDeploymentSpec.model_validate(request.spec)
    target = next(t for t in spec.compile.targets if t.name == request.target)
    model = fetch(spec.model.uri, spec.model.sha256)
    try:
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    except Exception as exc:
        message = f"{spec.model.uri}: not a loadable ONNX model: {exc}"
        raise errors.InvalidSpecError(message, "InvalidModel") from exc
    rng = np.random.default_rng(int(spec.model.sha256[:16], 16))
    samples = []
    timings = []
    for _ in range(GOLDEN_SAMPLES):
        feed = {arg.name: _sample(arg, rng) for arg in session.get_inputs()}
        began = time.perf_counter()
        outputs = session.run(None, feed)
        timings.append((time.perf_counter() - began) * 1000)
        samples.append(
            {
                "inputs": {name: bundle.encode_array(value) for name, value in feed.items()},
                "outputs": {
                    arg.name: bundle.encode_array(np.asarray(value))
                    for arg, value in zip(session.get_outputs(), outputs, strict=True)
                },
            }
        )
    manifest = {
        "schemaVersion": 1,
        "model": {
            "name": spec.model.name,
            "version": spec.model.version,
            "task": spec.model.task,
            "sourceSha256": spec.model.sha256,
        },
        "target": {"name": target.name, "selector": target.selector.to_wire()},
        "variant": {"name": "fp32-passthrough", "precision": "fp32", "reason": "packaged as is"},
        "compileOptions": target.to_wire(),
        "io": {
            "inputs": [{"name": a.name, "dtype": a.type, "shape": _dims(a.shape)} for a in session.get_inputs()],
            "outputs": [{"name": a.name, "dtype": a.type, "shape": _dims(a.shape)} for a in session.get_outputs()],
        },
        "golden": {"samples": samples, "rtol": 1e-4, "atol": 1e-5},
        "measurements": {
            "sizeBytes": len(model),
            "latencyP50Ms": float(np.percentile(timings, 50)),
            "latencyP95Ms": float(np.percentile(timings, 95)),
            "fidelity": {"maxAbsDiff": 0.0},
        },
    }
    return compiling.CompileResult(
        model=model,
        manifest=manifest,
        precision="fp32",
        variant="fp32-passthrough",
        accuracy_delta=0.0,
        speedup=1.0,
    )


__all__ = ["compile_fp32", "fetch"]
