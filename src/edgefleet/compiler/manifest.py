"""The bundle manifest of a compiled variant: what a device needs to check and run it, and how it was chosen.

:func:`build` writes the agreed manifest keys (``schemaVersion``, ``model``, ``target``, ``variant``,
``compileOptions``, ``io``, ``golden``, ``measurements``); signing adds ``files``
(:func:`edgefleet.adapters.bundle.build`). Golden samples are the first evaluation samples with the chosen variant's
outputs on them, and tolerances scaled to its precision, so a device's smoke test runs the real thing.

Only deterministic fields go in (fidelity rounded, host timings left out), so equal inputs give an equal manifest,
and with the same key a byte-identical bundle, whenever the same variant is chosen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

import edgefleet
from edgefleet.api import modeldeployment
from edgefleet.compiler import candidates, datasets, fidelity, hardware, measurement, selection
from edgefleet.core import tensors

Array = np.ndarray[Any, Any]
# (rtol, atol factor) of the golden samples per precision; atol is the factor times the largest output magnitude.
GOLDEN_TOLERANCE = {"fp32": (1e-3, 1e-3), "fp16": (1e-2, 1e-2), "int8": (5e-2, 5e-2)}
_BASE_FEATURES = frozenset({"sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "neon", "asimd"})


def build(
    *,
    source: bytes,
    target: modeldeployment.CompileTarget,
    task: str,
    model_name: str,
    model_version: str,
    target_hardware: hardware.Hardware,
    chosen: candidates.Variant,
    choice: selection.Choice,
    all_candidates: Sequence[selection.Candidate],
    evaluation: bytes,
    calibration: bytes | None,
    eval_feed: Mapping[str, Array],
    golden_samples: int,
) -> dict[str, Any]:
    """The manifest of ``chosen`` (the variant ``choice`` selected), without ``files``; see the module docstring."""
    assert chosen.model is not None
    hw = target_hardware
    sess = measurement.session(chosen.model, threads=hw.threads)
    inputs, outputs = measurement.signature(sess)
    golden = []
    scale = 0.0
    for feed in datasets.samples(dict(eval_feed), golden_samples):
        result = [np.asarray(o) for o in sess.run(None, feed)]
        scale = max([scale] + [float(np.max(np.abs(r))) for r in result if r.size])
        golden.append(
            {
                "inputs": {k: tensors.encode(v) for k, v in sorted(feed.items())},
                "outputs": {o.name: tensors.encode(r) for o, r in zip(outputs, result, strict=True)},
            }
        )
    rtol, atol_factor = GOLDEN_TOLERANCE[chosen.recipe.precision]
    atol = float(f"{max(atol_factor * scale, 1e-5):.3g}")
    fp32 = next(c for c in all_candidates if c.name == "fp32")
    selected = next(c for c in all_candidates if c.name == chosen.recipe.name)
    features = sorted(hw.features & (selection.INT8_DOT_FEATURES | selection.FP16_FEATURES | _BASE_FEATURES))
    return {
        "schemaVersion": 1,
        "model": {
            "name": model_name,
            "version": model_version,
            "task": task,
            "sourceSha256": hashlib.sha256(source).hexdigest(),
        },
        "target": {
            "name": target.name,
            "features": features,
            "providers": list(hw.providers),
            "threads": hw.threads,
        },
        "variant": {"name": chosen.recipe.name, "precision": chosen.recipe.precision, "reason": choice.reason},
        "compileOptions": {
            "precision": target.precision,
            "optimizeFor": target.optimize_for,
            "accuracyBudget": target.accuracy_budget.model_dump(by_alias=True, mode="json"),
            "quantization": target.quantization.model_dump(by_alias=True, mode="json", exclude_none=True)
            if target.quantization
            else None,
            "pruning": target.pruning.model_dump(by_alias=True, mode="json") if target.pruning else None,
            "variantOptions": _jsonable(chosen.options),
            "evaluationSha256": hashlib.sha256(evaluation).hexdigest(),
            "calibrationSha256": hashlib.sha256(calibration).hexdigest() if calibration is not None else None,
            "toolchain": {
                "edgefleet": edgefleet.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": ort.__version__,
            },
        },
        "io": {
            "inputs": [{"name": i.name, "dtype": i.dtype, "shape": list(i.shape)} for i in inputs],
            "outputs": [{"name": o.name, "dtype": o.dtype, "shape": list(o.shape)} for o in outputs],
        },
        "golden": {"samples": golden, "rtol": rtol, "atol": atol},
        "measurements": {
            "sizeBytes": selected.size_bytes,
            "compressedBytes": selected.compressed_bytes,
            "fp32SizeBytes": fp32.size_bytes,
            "sizeRatio": round(fp32.size_bytes / selected.size_bytes, 4) if selected.size_bytes else None,
            # Host timings differ between runs; they stay out of the signed manifest (see CompiledModel.report).
            "latencyP50Ms": None,
            "latencyP95Ms": None,
            "fidelity": fidelity.rounded(selected.fidelity),
            "evaluationSamples": len(next(iter(eval_feed.values()))),
            "candidates": [
                {
                    "name": c.name,
                    "precision": c.precision,
                    "sizeBytes": c.size_bytes,
                    "fidelity": fidelity.rounded(c.fidelity),
                    "verdict": choice.verdicts[c.name].reason,
                }
                for c in all_candidates
            ],
        },
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


__all__ = ["GOLDEN_TOLERANCE", "build"]
