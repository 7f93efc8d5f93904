"""The bundle manifest of a chosen variant: the agreed keys, deterministic, golden samples a device can replay, in
their own member within the stated bound."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgefleet.adapters import bundle
from edgefleet.compiler import candidates, goldens, hardware, manifest, measurement, selection
from edgefleet.core import errors, golden
from edgefleet.testing import models
from edgefleet.testing.compile_fixtures import target


def build(model: bytes, feed: dict[str, np.ndarray], count: int = 3) -> manifest.Members:
    variant = candidates.Variant(selection.Recipe("fp32", "fp32", "fp32"), model, {"b": [1], "a": None}, None, 0.1)
    candidate = candidates.candidate(variant.sized(), selection.Latency(1.0, 1.2, (1.0,)))
    choice = selection.choose("regression", [candidate], selection.Budget(0.01, 0.01), "fp32")
    return manifest.build(
        source=model,
        target=target("fp32"),
        task="regression",
        model_name="linear",
        model_version="1.0.0",
        target_hardware=hardware.Hardware("x86-host", frozenset({"avx2", "avx512_vnni", "not-a-feature"}), threads=2),
        chosen=variant,
        choice=choice,
        all_candidates=[candidate],
        evaluation=b"evaluation",
        calibration=None,
        eval_feed=feed,
        golden_samples=count,
    )


def test_manifest_is_deterministic_canonical_json_without_files() -> None:
    model = models.linear(3)
    feed = {"x": np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)}
    first, second = build(model, feed), build(model, feed)
    assert bundle.canonical_json(first.manifest) == bundle.canonical_json(second.manifest)
    assert first.golden == second.golden
    assert "files" not in first.manifest
    assert first.manifest["schemaVersion"] == 2
    assert first.manifest["target"] == {
        "name": "x86-host",
        "features": ["avx2", "avx512_vnni"],
        "providers": ["CPUExecutionProvider"],
        "threads": 2,
    }
    assert first.manifest["compileOptions"]["variantOptions"] == {"a": None, "b": [1]}
    assert first.manifest["measurements"]["latencyP50Ms"] is None


def test_golden_samples_replay_on_the_chosen_model_from_their_own_member() -> None:
    model = models.linear(3)
    feed = {"x": np.random.default_rng(1).standard_normal((8, 16)).astype(np.float32)}
    members = build(model, feed)
    entry = members.manifest["golden"]
    assert entry["member"] == golden.MEMBER and entry["rtol"] == manifest.GOLDEN_TOLERANCE["fp32"][0]
    assert "data" not in str(entry)  # descriptors only: no base64 tensors in the manifest any more
    decoded = golden.decode(entry, members.golden)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    assert len(decoded.samples) == 3
    for i, sample in enumerate(decoded.samples):
        assert np.array_equal(sample.inputs["x"], feed["x"][i : i + 1])  # small inputs are stored as they are
        (y,) = session.run(None, dict(sample.inputs))
        assert np.allclose(y, sample.outputs["y"], rtol=decoded.rtol, atol=decoded.atol)


def _image_model(fixed: bool) -> bytes:
    """A 3x3 convolution over an image: a fixed 1x3x224x224 classifier-like head (pooled to 4 numbers), or a
    detector-like map with symbolic height and width."""
    dims: list[int | str] = [1, 3, 224, 224] if fixed else ["N", 3, "H", "W"]
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], np.linspace(-1, 1, 108).astype(np.float32))
    conv = helper.make_node("Conv", ["x", "w"], ["c" if fixed else "y"], pads=[1, 1, 1, 1])
    nodes = [conv, helper.make_node("GlobalAveragePool", ["c"], ["y"])] if fixed else [conv]
    out = [1, 4, 1, 1] if fixed else [dims[0], 4, dims[2], dims[3]]
    graph = helper.make_graph(
        nodes,
        "image",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def test_large_inputs_are_snapped_to_8_bits_and_outputs_recomputed_within_the_bound() -> None:
    model = _image_model(fixed=True)
    noise = np.random.default_rng(2).standard_normal((2, 3, 224, 224)).astype(np.float32)  # incompressible
    sess = measurement.session(model)
    inputs, _ = measurement.signature(sess)
    recorded = goldens.record(model, {"x": noise}, inputs, 2)
    assert len(recorded.member) <= golden.MAX_MEMBER_BYTES
    decoded = golden.decode({"samples": recorded.samples, "rtol": 1e-3, "atol": 1e-3}, recorded.member)
    assert recorded.samples[0]["inputs"][0]["encoding"] == "u8grid"
    x = decoded.samples[0].inputs["x"]
    assert x.dtype == np.float32 and not np.array_equal(x, noise[:1])
    assert np.abs(x - noise[:1]).max() <= (noise[0].max() - noise[0].min()) / 255  # within one grid step
    (y,) = sess.run(None, {"x": x})
    assert np.allclose(y, decoded.samples[0].outputs["y"], rtol=1e-5, atol=1e-5)  # outputs of the snapped input
    goldens.check(model, recorded.samples, recorded.member, 1e-3, 1e-3)


def test_inputs_with_symbolic_spatial_axes_are_centre_cropped_until_they_fit() -> None:
    model = _image_model(fixed=False)
    scene = np.random.default_rng(3).standard_normal((1, 3, 480, 640)).astype(np.float32)
    inputs, _ = measurement.signature(measurement.session(model))
    recorded = goldens.record(model, {"x": scene}, inputs, 1)
    shape = recorded.samples[0]["inputs"][0]["shape"]
    assert shape[:2] == [1, 3] and shape[2] < 480 and shape[3] < 640 and shape[2] % 32 == 0
    assert "cropped" in recorded.notes[0]
    assert len(recorded.member) <= golden.MAX_MEMBER_BYTES


def test_a_model_whose_smallest_sample_cannot_fit_fails_the_compile_naming_the_bound() -> None:
    # 1x3x224x224 in, 64 channels of fixed 224x224 out: 12.8 MB of float outputs per sample, nothing to crop
    w = helper.make_tensor("w", TensorProto.FLOAT, [64, 3, 1, 1], np.ones(192, np.float32))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 224, 224])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    data = model.SerializeToString()
    onnx.checker.check_model(model)
    noise = np.random.default_rng(4).standard_normal((1, 3, 224, 224)).astype(np.float32)
    inputs, _ = measurement.signature(measurement.session(data))
    with pytest.raises(errors.InvalidSpecError, match=r"262144-byte bound of golden.bin") as failed:
        goldens.record(data, {"x": noise}, inputs, 1)
    assert failed.value.reason is errors.Reason.UNSUPPORTED_MODEL


def test_bundle_bytes_is_the_exact_size_of_the_published_bundle(signing_key: bundle.ed25519.Ed25519PrivateKey) -> None:
    model = models.linear(3)
    members = build(model, {"x": np.random.default_rng(5).standard_normal((4, 16)).astype(np.float32)})
    _, data = bundle.build(members.manifest, model, signing_key, members.golden)
    assert manifest.bundle_bytes(len(model), members.manifest, len(members.golden)) == len(data)
