"""Small real ONNX models and an HTTP server for them, built in the test run (nothing is downloaded)."""

from __future__ import annotations

from edgefleet.testing import fileserver


def adder(offset: float) -> bytes:
    """A real ONNX model computing y = x + offset for x of shape [batch, 4]."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Add", ["x", "c"], ["y"])
    const = helper.make_tensor("c", TensorProto.FLOAT, [1], [offset])
    graph = helper.make_graph(
        [node],
        "add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[const],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def linear(seed: int, width: int = 16) -> bytes:
    """A real ONNX model y = x @ W + b (random W, b), whose INT8 variants differ measurably from FP32."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal((width,)).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def wide(offset: float, hidden: int = 2304, seed: int = 3) -> bytes:
    """A real ONNX regression model of about 21 MB: y ~= x + offset for x of shape [batch, 4], computed by a wide
    two-hidden-layer ReLU network (4 -> ``hidden`` -> ``hidden`` -> 4; 5.3 M float32 weights at the default width).

    The hidden layers are random features (seeded, shared by every version); the output layer is fitted by ridge
    regression to ``x + offset`` on random inputs, so each version computes its own function and has its own weights.
    Every weight takes part in every inference (about 0.3-1 ms on one core), as in a real model of this size; it is
    the benchmark's stand-in for a 20 MB factory model (``benchmarks/model_bytes.py``).
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((4, hidden)) / 2.0).astype(np.float32)
    b1 = rng.standard_normal(hidden).astype(np.float32) * 0.1
    w2 = (rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(np.float32)
    b2 = np.zeros(hidden, np.float32)
    x = np.random.default_rng(seed + 1).standard_normal((1024, 4)).astype(np.float32)
    h = np.maximum(np.maximum(x @ w1 + b1, 0) @ w2 + b2, 0)
    design = np.concatenate([h, np.ones((len(h), 1), np.float32)], axis=1).astype(np.float64)
    # Ridge regression in its dual form (a 1024 x 1024 solve), so building a version takes well under a second.
    dual = np.linalg.solve(design @ design.T + 1e-3 * np.eye(len(design)), (x + offset).astype(np.float64))
    solution = design.T @ dual
    w3, b3 = solution[:-1].astype(np.float32), solution[-1].astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["h1"]),
        helper.make_node("MatMul", ["h1", "w2"], ["m2"]),
        helper.make_node("Add", ["m2", "b2"], ["a2"]),
        helper.make_node("Relu", ["a2"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w3"], ["m3"]),
        helper.make_node("Add", ["m3", "b3"], ["y"]),
    ]
    weights = {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "w3": w3, "b3": b3}
    graph = helper.make_graph(
        nodes,
        "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def evaluation_set(width: int, samples: int = 64, seed: int = 0) -> bytes:
    """An ``.npz`` evaluation set for an input named ``x`` of ``width`` features."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, x=np.random.default_rng(seed).standard_normal((samples, width)).astype(np.float32))
    return buffer.getvalue()


served = fileserver.served
