"""Graph passes on the quirks of exported models, with real onnx and onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgefleet.compiler import passes, pipeline
from edgefleet.core import errors
from edgefleet.testing import examples
from edgefleet.testing.compile_fixtures import FAST, target


def _exported_style_model() -> bytes:
    """Opset 11, weights in Constant nodes, symbolic batch/height/width: like a Paddle/TF export."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.3
    b = rng.standard_normal(16).astype(np.float32) * 0.1
    fc = rng.standard_normal((16, 4)).astype(np.float32) * 0.3

    def const(name: str, value: np.ndarray) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))

    nodes = [
        const("w", w),
        const("b", b),
        const("fc", fc),
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "fc"], ["y"], name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "exported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    data: bytes = model.SerializeToString()
    return data


def test_normalize_moves_constant_weights_to_initializers() -> None:
    model = passes.normalize(passes.load_source(_exported_style_model()))
    assert sorted(t.name for t in model.graph.initializer) == ["b", "fc", "w"]
    assert [n.op_type for n in model.graph.node if n.op_type == "Constant"] == []
    assert passes.weight_nodes(passes.serialize(model)) == ["conv", "head"]


def test_per_channel_int8_on_opset11_upgrades_instead_of_breaking() -> None:
    base = passes.optimize(passes.serialize(passes.normalize(passes.load_source(_exported_style_model()))))
    feeds = [{"x": np.random.default_rng(i).standard_normal((1, 3, 8, 8)).astype(np.float32)} for i in range(8)]
    quantized, options = passes.quantize_static(base, feeds, quant_format="QDQ", per_channel=True)
    assert options["perChannel"] is True
    assert passes.opset(onnx.load_model_from_string(quantized)) >= passes.PER_CHANNEL_MIN_OPSET
    session = ort.InferenceSession(quantized, providers=["CPUExecutionProvider"])
    # symbolic height/width still work after quantization: run a different spatial size than calibration
    out = session.run(None, {"x": np.ones((2, 3, 12, 20), np.float32)})[0]
    assert out.shape == (2, 4) and np.all(np.isfinite(out))


def test_compile_exported_style_model_end_to_end() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, 3, 8, 8)).astype(np.float32)
    result = pipeline.compile_model(
        _exported_style_model(),
        target("auto"),
        "regression",
        evaluation=examples.npz_bytes({"x": x}),
        calibration=examples.npz_bytes({"x": x[:16]}),
        model_name="exported",
        model_version="0.1.0",
        effort=FAST,
    )
    assert [c.name for c in result.candidates if c.error] == []
    assert result.manifest["io"]["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["n", 3, "h", "w"]}]


def test_load_source_rejects_external_data() -> None:
    model = onnx.load_model_from_string(_exported_style_model())
    tensor = model.graph.node[0].attribute[0].t
    init = onnx.TensorProto()
    init.CopyFrom(tensor)
    init.name = "ext"
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    init.external_data.add(key="location", value="../../etc/passwd")
    model.graph.initializer.append(init)
    with pytest.raises(errors.InvalidSpecError, match="uses external data") as info:
        passes.load_source(model.SerializeToString())
    assert info.value.reason is errors.Reason.INVALID_INPUT


def test_opset_21_model_compiles() -> None:
    from onnx import version_converter

    from edgefleet.testing.compile_fixtures import compile_example, load_example

    example = load_example("digits-cnn")
    upgraded = version_converter.convert_version(onnx.load_model_from_string(example.model), 21)
    newest = type(example)(
        example.name, example.task, upgraded.SerializeToString(), example.evaluation, example.calibration
    )
    spec = {"method": "static", "format": "QDQ", "calibrationMethod": "MinMax"}
    result = compile_example(newest, target("int8", quantization=spec))
    assert result.selected.precision == "int8"
    assert passes.opset(onnx.load_model_from_string(result.model)) == 21
    ort.InferenceSession(result.model, providers=["CPUExecutionProvider"])
