"""The bundle manifest of a compiled variant: what a device needs to check and run it, and how it was chosen.

:func:`build` writes the agreed manifest keys (``schemaVersion`` 2, ``model``, ``target``, ``variant``,
``compileOptions``, ``io``, ``golden``, ``measurements``) and the ``golden.bin`` member; signing adds ``files``
(:func:`edgefleet.adapters.bundle.build`). Golden samples are evaluation samples with the chosen variant's outputs on
them, stored within a byte bound (:mod:`~edgefleet.compiler.goldens`), with tolerances scaled to its precision, so a
device's smoke test runs the real thing. Sections a later compile step adds (for example reference statistics of
inputs and outputs) go in their own top-level key, next to ``golden``, built by their own function.

Only deterministic fields go in (fidelity rounded, host timings left out), so equal inputs give an equal manifest,
and with the same key a byte-identical bundle, whenever the same variant is chosen.

:func:`bundle_bytes` is the exact size of the bundle a publisher will write for given members (the tar layout of
:mod:`edgefleet.adapters.bundle`), so the candidate table can show bundle bytes next to model bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

import edgefleet
from edgefleet.api import modeldeployment
from edgefleet.compiler import candidates, fidelity, goldens, hardware, measurement, selection
from edgefleet.core import golden

Array = np.ndarray[Any, Any]
SCHEMA_VERSION = 2
# (rtol, atol factor) of the golden samples per precision; atol is the factor times the largest output magnitude.
GOLDEN_TOLERANCE = {"fp32": (1e-3, 1e-3), "fp16": (1e-2, 1e-2), "int8": (5e-2, 5e-2)}
_BASE_FEATURES = frozenset({"sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "neon", "asimd"})
# The tar layout of a bundle (adapters/bundle.py): 512-byte headers and blocks, two end blocks, 10 KiB records.
_BLOCK, _RECORD = 512, 20 * 512
# signature.json: {"algorithm":"ed25519","keyId":<16 hex>,"payloadSha256":<64 hex>,"signature":<88 base64>}
# What a compiled bundle may add to its model: the golden member's bound plus 64 KiB for the manifest, the signature
# and the tar framing (a manifest of a dozen candidates is ~8 KiB). The compile fails rather than exceed it.
MAX_OVERHEAD_BYTES = golden.MAX_MEMBER_BYTES + 64 * 1024
_SIGNATURE_BYTES = len('{"algorithm":"ed25519","keyId":"","payloadSha256":"","signature":""}') + 16 + 64 + 88


@dataclasses.dataclass(frozen=True)
class Members:
    """The unsigned members of the chosen variant's bundle."""

    manifest: dict[str, Any]
    golden: bytes
    notes: list[str]


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
) -> Members:
    """The manifest of ``chosen`` (the variant ``choice`` selected), without ``files``, and its golden member."""
    assert chosen.model is not None
    hw = target_hardware
    sess = measurement.session(chosen.model, threads=hw.threads)
    inputs, outputs = measurement.signature(sess)
    recorded = goldens.record(chosen.model, eval_feed, inputs, golden_samples, threads=hw.threads)
    rtol, atol_factor = GOLDEN_TOLERANCE[chosen.recipe.precision]
    atol = float(f"{max(atol_factor * recorded.scale, 1e-5):.3g}")
    goldens.check(chosen.model, recorded.samples, recorded.member, rtol, atol, threads=hw.threads)
    fp32 = next(c for c in all_candidates if c.name == "fp32")
    selected = next(c for c in all_candidates if c.name == chosen.recipe.name)
    features = sorted(hw.features & (selection.INT8_DOT_FEATURES | selection.FP16_FEATURES | _BASE_FEATURES))
    manifest = {
        "schemaVersion": SCHEMA_VERSION,
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
        "golden": {"member": golden.MEMBER, "samples": recorded.samples, "rtol": rtol, "atol": atol},
        "measurements": {
            "sizeBytes": selected.size_bytes,
            "compressedBytes": selected.compressed_bytes,
            "fp32SizeBytes": fp32.size_bytes,
            "sizeRatio": round(fp32.size_bytes / selected.size_bytes, 4) if selected.size_bytes else None,
            # Host timings differ between runs; they stay out of the signed manifest (see CompiledModel.report).
            "latencyP50Ms": None,
            "latencyP95Ms": None,
            "fidelity": fidelity.rounded(selected.fidelity),
            "fidelityIntervals": fidelity.rounded_intervals(selected.intervals),
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
    return Members(manifest, recorded.member, recorded.notes)


def bundle_bytes(model_bytes: int, manifest: Mapping[str, Any], golden_bytes: int | None) -> int:
    """The exact size of the bundle :func:`edgefleet.adapters.bundle.build` writes for these members (pure).

    ``manifest`` is the unsigned manifest; signing adds ``files`` (sha256 and size of the model and golden member).
    """
    files: dict[str, Any] = {"model.onnx": {"sha256": "0" * 64, "size": model_bytes}}
    if golden_bytes is not None:
        files[golden.MEMBER] = {"sha256": "0" * 64, "size": golden_bytes}
    body = json.dumps({**manifest, "files": files}, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    sizes = [model_bytes, len(body.encode()), _SIGNATURE_BYTES] + ([golden_bytes] if golden_bytes is not None else [])
    blocks = sum(_BLOCK + -(-size // _BLOCK) * _BLOCK for size in sizes) + 2 * _BLOCK
    return -(-blocks // _RECORD) * _RECORD


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


__all__ = ["GOLDEN_TOLERANCE", "MAX_OVERHEAD_BYTES", "SCHEMA_VERSION", "Members", "build", "bundle_bytes"]
