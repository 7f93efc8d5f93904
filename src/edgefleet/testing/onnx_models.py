"""Tiny ONNX models and signed bundles for edge reconciler tests, built with ``onnx.helper`` (no downloads).

Every model maps ``x: float32[N, 4]`` to ``y: float32[N, 3]`` as ``y = x @ W + b`` (plus a version-dependent
offset, so tests can tell versions apart from the outputs). Variants:

``good``      the plain affine model.
``slow``      the same outputs, plus a hidden ``[S, S] @ [S, S]`` matmul multiplied by 0: correct but slow.
``nan``       the same outputs plus ``0 * sum(sqrt(x))``: finite for the golden inputs (all positive) and NaN for
              any live input with a negative element.
``bad-golden`` a different ``W`` than the golden outputs in its manifest were computed with.

:func:`make_bundle` computes the golden outputs with onnxruntime from the *good* model of the same version, so
``slow`` and ``nan`` pass their smoke test and only live traffic can reveal them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
from cryptography.hazmat.primitives.asymmetric import ed25519
from onnx import TensorProto, helper, numpy_helper

from edgefleet.adapters import bundle

Variant = Literal["good", "slow", "nan", "bad-golden"]
W = np.array([[0.5, -1.0, 0.25], [1.5, 0.5, -0.75], [-0.5, 2.0, 1.0], [0.1, 0.2, 0.3]], dtype=np.float32)
B = np.array([0.1, -0.2, 0.3], dtype=np.float32)


def offset_for(version: str) -> float:
    """A per-version constant added to ``b`` so outputs differ between versions (major + minor/10 + patch/100)."""
    major, minor, patch = (int(p) for p in version.split("+")[0].split("-")[0].split("."))
    return major + minor / 10 + patch / 100


def model_bytes(variant: Variant = "good", version: str = "1.0.0", slow_size: int = 768, pad_bytes: int = 0) -> bytes:
    """Serialized ONNX model of ``variant`` (opset 17); ``pad_bytes`` adds a zero-weighted initializer of that size
    so downloads span many chunks (crash-mid-download tests)."""
    w = W + (1.0 if variant == "bad-golden" else 0.0)
    b = B + np.float32(offset_for(version))
    inits = [
        numpy_helper.from_array(w.astype(np.float32), "W"),
        numpy_helper.from_array(b.astype(np.float32), "B"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
    ]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"])]
    if pad_bytes:
        pad = np.random.default_rng(0).normal(size=pad_bytes // 4).astype(np.float32)
        inits.append(numpy_helper.from_array(pad, "pad"))
        nodes += [
            helper.make_node("ReduceMean", ["pad"], ["pad_mean"], keepdims=0),
            helper.make_node("Mul", ["pad_mean", "zero"], ["pad_zero"]),
            helper.make_node("Add", ["B", "pad_zero"], ["bias"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["B"], ["bias"]))
    nodes.append(helper.make_node("Add", ["xw", "bias"], ["affine"]))
    if variant == "slow":
        inits.append(numpy_helper.from_array(np.array([slow_size, slow_size], dtype=np.int64), "big_shape"))
        nodes += [
            helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
            helper.make_node("Expand", ["m", "big_shape"], ["big"]),
            helper.make_node("MatMul", ["big", "big"], ["sq"]),
            helper.make_node("MatMul", ["sq", "big"], ["cube"]),
            helper.make_node("ReduceMean", ["cube"], ["cm"], keepdims=0),
            helper.make_node("Mul", ["cm", "zero"], ["hidden"]),
            helper.make_node("Add", ["affine", "hidden"], ["y"]),
        ]
    elif variant == "nan":
        inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"))
        nodes += [
            helper.make_node("Sqrt", ["x"], ["root"]),
            helper.make_node("ReduceSum", ["root", "axis1"], ["rs"], keepdims=1),
            helper.make_node("Mul", ["rs", "zero"], ["hidden"]),
            helper.make_node("Add", ["affine", "hidden"], ["y"]),
        ]
    else:
        nodes.append(helper.make_node("Mul", ["affine", "one"], ["y"]))
        inits.append(numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"))
    graph = helper.make_graph(
        nodes,
        f"edgefleet-test-{variant}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgefleet-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def reference(x: np.ndarray[Any, Any], version: str = "1.0.0") -> np.ndarray[Any, Any]:
    """What the good model of ``version`` outputs for ``x`` (numpy, independent of onnxruntime)."""
    return x.astype(np.float32) @ W + (B + np.float32(offset_for(version)))


def golden_inputs(count: int = 2, seed: int = 7) -> list[np.ndarray[Any, Any]]:
    """Strictly positive inputs (so the ``nan`` variant stays finite on them)."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.1, 2.0, size=(2, 4)).astype(np.float32) for _ in range(count)]


def manifest_for(name: str, version: str, variant: Variant = "good") -> dict[str, Any]:
    """The manifest the compiler would write, golden outputs computed by onnxruntime on the good model."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes("good", version), options, providers=["CPUExecutionProvider"])
    samples = []
    for x in golden_inputs():
        (y,) = session.run(["y"], {"x": x})
        samples.append({"inputs": {"x": bundle.encode_array(x)}, "outputs": {"y": bundle.encode_array(y)}})
    return {
        "schemaVersion": 1,
        "model": {"name": name, "version": version, "task": "regression", "sourceSha256": "0" * 64},
        "target": {"name": "x86-test"},
        "variant": {"name": variant, "precision": "fp32", "reason": "test fixture"},
        "compileOptions": {},
        "io": {
            "inputs": [{"name": "x", "dtype": "float32", "shape": ["N", 4]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": ["N", 3]}],
        },
        "golden": {"samples": samples, "rtol": 1e-4, "atol": 1e-5},
        "measurements": {"sizeBytes": 0},
    }


@dataclasses.dataclass(frozen=True)
class TestBundle:
    """A built bundle and what a DesiredModel needs to point at it."""

    name: str
    version: str
    variant: Variant
    digest: str
    data: bytes

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.variant}.bundle"


def make_bundle(
    key: ed25519.Ed25519PrivateKey,
    name: str = "demo",
    version: str = "1.0.0",
    variant: Variant = "good",
    *,
    pad_bytes: int = 0,
) -> TestBundle:
    """A signed bundle of ``variant`` whose golden samples come from the good model of ``version``."""
    model = model_bytes(variant, version, pad_bytes=pad_bytes)
    digest, data = bundle.build(manifest_for(name, version, variant), model, key)
    return TestBundle(name, version, variant, digest, data)


def signed_unchecked(
    manifest: dict[str, Any], members: dict[str, bytes], key: ed25519.Ed25519PrivateKey
) -> tuple[str, bytes]:
    """``(digest, data)`` of a bundle signed and packed as a buggy or compromised publisher would: without
    :func:`edgefleet.adapters.bundle.build`'s refusal to publish what a device would reject (so hostile-input tests
    exercise the device's own checks)."""
    return bundle._seal(manifest, members, key)


__all__ = [
    "TestBundle",
    "Variant",
    "golden_inputs",
    "make_bundle",
    "manifest_for",
    "model_bytes",
    "reference",
    "signed_unchecked",
]
