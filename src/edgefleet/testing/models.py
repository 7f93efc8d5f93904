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


def evaluation_set(width: int, samples: int = 64, seed: int = 0) -> bytes:
    """An ``.npz`` evaluation set for an input named ``x`` of ``width`` features."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, x=np.random.default_rng(seed).standard_normal((samples, width)).astype(np.float32))
    return buffer.getvalue()


served = fileserver.served
