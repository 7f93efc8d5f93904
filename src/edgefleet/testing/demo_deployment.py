"""What ``make demo`` rolls out: the digits-cnn model and its versions, and the ModelDeployment with the health
thresholds every device judges them by (:mod:`edgefleet.testing.demo` plays the story).

1.0.0 is the example model (``examples/models/digits-cnn``, or built when there is no source checkout), 1.1.0 the
same network "retrained" (weights nudged, predictions unchanged), 1.2.0 accurate but too slow for the threshold.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgefleet.testing import controlplane, examples

EXAMPLE = controlplane.REPO / "examples" / "models" / "digits-cnn"
NAMESPACE = "edgefleet-demo"
# What every device judges a new version by, and the too-slow 1.2.0. The margins, measured on the 2-core machine
# this demo was tuned on (50 devices in 3 processes, ~500 requests/s, another fleet benchmark sharing the cores):
# - 1.0.0 and 1.1.0 take ~0.02 ms of onnxruntime time. A device measures more (Python around the call, a GIL shared
#   with 16 other devices, preemption on busy cores): a window's p95 is typically 2-3 ms, and the worst window of at
#   least minSamples seen on a device on probation was 11 ms (three runs). 20 ms leaves room for a busier machine.
# - 1.2.0 is SLOW_DEPTH dense layers slower: ~48 ms per call on an idle core of that machine (2.4x the threshold),
#   300-600 ms on the loaded devices. Load only slows it further, so its rejection does not depend on the load.
# - minSamples 40 makes p95 the 38th of 40 samples: a good version fails only on three slow samples, not on one
#   stall (the first calls after a switch are the slowest: up to 19 ms over fewer than 40 samples).
# - windowSeconds 40: a device whose window passes with fewer than minSamples samples confirms the version (a device
#   without traffic cannot prove it bad), so 40 calls of 1.2.0 must fit in it even at ~900 ms each.
HEALTH = {"latencyP95Ms": 20.0, "maxErrorRate": 0.01, "minSamples": 40, "windowSeconds": 40}
SLOW_DEPTH = 270


# -- models ------------------------------------------------------------------------------------------------------


def retrained(model: bytes, seed: int) -> bytes:
    """A "retrained" model: the same network with its weights nudged by 0.1 % noise (predictions unchanged)."""
    proto = onnx.load_from_string(model)
    rng = np.random.default_rng(seed)
    for init in proto.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32 and array.size > 16:
            noisy = array * (1 + 0.001 * rng.standard_normal(array.shape).astype(np.float32))
            init.CopyFrom(numpy_helper.from_array(noisy.astype(np.float32), init.name))
    data: bytes = proto.SerializeToString()
    return data


def too_slow(model: bytes, depth: int, width: int = 1024) -> bytes:
    """The same predictions plus a dead branch: ``depth`` dense ``width`` x ``width`` layers (about 0.18 ms each on one
    x86 core) on the batch's sum, multiplied by zero and added to the logits. Accurate, but slow on every call; its
    cost does not grow with the batch, so the compiler's accuracy check over the evaluation set stays quick."""
    proto = onnx.load_from_string(model)
    graph = proto.graph
    out = graph.output[0].name
    for node in graph.node:
        node.output[:] = [f"{out}_fast" if o == out else o for o in node.output]
    rng = np.random.default_rng(7)
    # Orthogonal weights keep the branch's values at the input's scale: random ones would shrink them into
    # denormals (which made the latency depend on the CPU's denormal handling) or grow them into Inf (NaN * 0).
    orthogonal, _ = np.linalg.qr(rng.standard_normal((width, width)))
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.zeros(1, np.int64), "slow_batch_axis"),
            numpy_helper.from_array((rng.standard_normal((64, width)) / 8).astype(np.float32), "slow_in"),
            numpy_helper.from_array(orthogonal.astype(np.float32), "slow_w"),
            numpy_helper.from_array(np.ones((width, 1), np.float32), "slow_sum"),
            numpy_helper.from_array(np.zeros((1,), np.float32), "slow_zero"),
        ]
    )
    nodes = [helper.make_node("Flatten", [graph.input[0].name], ["slow_flat"]),
             helper.make_node("ReduceSum", ["slow_flat", "slow_batch_axis"], ["slow_batch"], keepdims=1),
             helper.make_node("MatMul", ["slow_batch", "slow_in"], ["slow_0"])]  # fmt: skip
    for i in range(depth):
        nodes.append(helper.make_node("MatMul", [f"slow_{i}", "slow_w"], [f"slow_{i + 1}"]))
    nodes += [
        helper.make_node("MatMul", [f"slow_{depth}", "slow_sum"], ["slow_total"]),
        helper.make_node("Mul", ["slow_total", "slow_zero"], ["slow_nothing"]),
        helper.make_node("Add", [f"{out}_fast", "slow_nothing"], [out]),
    ]
    graph.node.extend(nodes)
    onnx.checker.check_model(proto)
    data: bytes = proto.SerializeToString()
    return data


def example_model(root: Path) -> Path:
    """The digits-cnn example's directory: the committed one in a source checkout; without one (the demo run from an
    installed wheel) built into ``root`` from scikit-learn's bundled digits (a few seconds, the same bytes)."""
    if (EXAMPLE / "model.onnx").is_file():
        return EXAMPLE
    return examples.write_example(examples.build_digits_cnn(), root)


# -- manifests ---------------------------------------------------------------------------------------------------


def deployment(url: str, version: str, models: Path, precision: str) -> dict[str, Any]:
    digest = hashlib.sha256((models / f"digits-{version}.onnx").read_bytes()).hexdigest()
    dataset = {
        "uri": f"{url}/evaluation.npz",
        "sha256": hashlib.sha256((models / "evaluation.npz").read_bytes()).hexdigest(),
    }
    return {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "digits", "namespace": NAMESPACE},
        "spec": {
            "model": {
                "name": "digits",
                "version": version,
                "uri": f"{url}/digits-{version}.onnx",
                "sha256": digest,
                "task": "classification",
            },
            "compile": {
                "targets": [
                    {
                        "name": "x86-avx2",
                        "selector": {"matchLabels": {"edgefleet.io/hardware-class": "x86-avx2"}},
                        "precision": precision,
                        "calibration": {
                            "uri": f"{url}/calibration.npz",
                            "sha256": hashlib.sha256((models / "calibration.npz").read_bytes()).hexdigest(),
                        },
                        "evaluation": dataset,
                        "accuracyBudget": {"maxAccuracyDrop": 0.01},
                    }
                ]
            },
            "selector": {"matchLabels": {"app": "digit-reader"}},
            "rollout": {
                "steps": [
                    {"setWeight": 10},
                    {"analysis": {"durationSeconds": 5, "minSamples": 100}},
                    {"setWeight": 50},
                    {"setWeight": 100},
                ],
                "maxUnavailable": "34%",
                "progressDeadlineSeconds": 90,
            },
            "health": HEALTH,
        },
    }
