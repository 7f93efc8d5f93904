"""Robustness on real pretrained models that ship inside a PyPI wheel (not trained here).

``rapidocr-onnxruntime`` ships PaddleOCR's text-line orientation classifier (opset 11) and text detector
(opset 12). Both hold every weight in ``Constant`` nodes and have symbolic batch/height/width dimensions: the
quirks exported models have. Inputs are text rendered onto scikit-learn's bundled sample photos. The package is
located without importing it (its import needs OpenCV, which the compiler does not).
"""

from __future__ import annotations

import importlib.util
import pathlib

import onnx
import pytest

from edgefleet.compiler import passes, pipeline, selection
from edgefleet.testing import examples
from edgefleet.testing.compile_fixtures import FAST, target

pytest.importorskip("PIL", reason="Pillow decodes scikit-learn's sample photos")
_spec = importlib.util.find_spec("rapidocr_onnxruntime")
if _spec is None or not _spec.submodule_search_locations:
    pytest.skip("rapidocr-onnxruntime (ships the pretrained models) is not installed", allow_module_level=True)
MODELS = pathlib.Path(next(iter(_spec.submodule_search_locations))) / "models"
CLS = MODELS / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
DET = MODELS / "ch_PP-OCRv4_det_infer.onnx"

pytestmark = pytest.mark.slow


def _quirks(path: pathlib.Path) -> tuple[int, int]:
    model = onnx.load(str(path))
    return passes.opset(model), sum(n.op_type == "Constant" for n in model.graph.node)


def test_orientation_classifier_opset11_constant_weights() -> None:
    opset, constants = _quirks(CLS)
    assert opset == 11 and constants > 100  # the quirks this test is about
    images, labels = examples.text_line_images(48, seed=1)
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
    assert selection.gate("classification", result.selected.fidelity, selection.Budget(0.01, 0.01)).passed
    assert result.selected.latency is not None and fp32.latency is not None
    assert result.selected.latency.p50 <= fp32.latency.p50
    # symbolic dimensions survive into the signature as strings
    shape = result.manifest["io"]["inputs"][0]["shape"]
    assert shape[1] == 3 and all(isinstance(d, str) for d in (shape[0], shape[2], shape[3]))


def test_text_detector_fp16_keeps_score_map() -> None:
    opset, constants = _quirks(DET)
    assert opset == 12 and constants > 100
    scenes = examples.text_scene_images(8, size=96, seed=1)
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


def test_preprocessing_leaves_the_working_directory_clean(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime's symbolic shape inference dumps files into the CWD when it fails, as it does here."""
    monkeypatch.chdir(tmp_path)
    base = passes.optimize(passes.serialize(passes.normalize(passes.load_source(DET.read_bytes()))))
    processed, level = passes.preprocess(base)
    assert level == "no-symbolic-shapes"  # the full level failed, which is what used to litter
    assert list(tmp_path.iterdir()) == []
    assert pathlib.Path.cwd() == tmp_path
    onnx.checker.check_model(onnx.load_model_from_string(processed))
