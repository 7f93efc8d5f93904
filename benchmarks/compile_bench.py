"""Side by side: what plain onnxruntime tools give a user versus ``edgefleet compile``.

For each example model (and, with ``--pretrained``, PaddleOCR's text-line classifier shipped in the
``rapidocr-onnxruntime`` wheel) this builds:

* the source FP32 model as a user would run it;
* ``onnxruntime.quantization.quantize_dynamic`` with defaults;
* ``onnxruntime.quantization.quantize_static`` with defaults (QDQ, S8S8, per-tensor, MinMax), calibrated;
* ``onnxruntime.transformers.float16.convert_float_to_float16`` with defaults (float16 IO: inputs are cast);
* ``edgefleet compile`` with ``precision`` auto, fp32, fp16 and int8;

then times every variant *interleaved in one harness* (batch 1, one intra-op thread, full online optimisation)
and prints one table per model: file size and ratio, zlib-compressed size, latency p50/p95, speed-up against
the source FP32, fidelity against the source FP32 on the evaluation set, and build time.

Run: ``PYTHONPATH=src python benchmarks/compile_bench.py [--pretrained] [--rounds 9]``
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime import quantization as ortq
from onnxruntime.transformers import float16 as ort_float16

from edgefleet.adapters import bundle
from edgefleet.api import modeldeployment
from edgefleet.compiler import datasets, fidelity, hardware, measurement, passes, pipeline, selection
from edgefleet.core import errors
from edgefleet.testing import examples

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "models"
Array = np.ndarray[Any, Any]


class Variant:
    def __init__(self, label: str, model: bytes, seconds: float, fp16_io: bool = False, note: str = "") -> None:
        self.label = label
        self.model = model
        self.seconds = seconds
        self.fp16_io = fp16_io
        self.note = note


class _Wrapped:
    """A session whose float32 feeds are cast to float16 (for the converter's default float16 IO)."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def run(self, names: Any, feed: dict[str, Array]) -> list[Array]:
        cast = {k: v.astype(np.float16) for k, v in feed.items()}
        return [np.asarray(o, dtype=np.float32) for o in self._session.run(names, cast)]

    def get_inputs(self) -> Any:
        return self._session.get_inputs()

    def get_outputs(self) -> Any:
        return self._session.get_outputs()


def _timed(fn: Callable[[], bytes]) -> tuple[bytes, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def plain_tools(source: bytes, calibration: list[dict[str, Array]]) -> list[Variant]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp)

        def dynamic() -> bytes:
            ortq.quantize_dynamic(onnx.load_model_from_string(source), path / "dyn.onnx")
            return (path / "dyn.onnx").read_bytes()

        def static() -> bytes:
            reader = passes._Reader(calibration)
            ortq.quantize_static(onnx.load_model_from_string(source), path / "qdq.onnx", reader)
            return (path / "qdq.onnx").read_bytes()

        def fp16() -> bytes:
            converted = ort_float16.convert_float_to_float16(onnx.load_model_from_string(source))
            return passes.serialize(converted)

        for label, fn, fp16_io in (
            ("ort quantize_dynamic (defaults)", dynamic, False),
            ("ort quantize_static QDQ (defaults)", static, False),
            ("ort float16 converter (defaults)", fp16, True),
        ):
            try:
                with passes._quiet():
                    model, seconds = _timed(fn)
                out.append(Variant(label, model, seconds, fp16_io))
            except Exception as exc:  # a plain tool failing is itself a result worth printing
                out.append(Variant(label, b"", 0.0, note=f"failed: {str(exc).splitlines()[0][:60]}"))
    return out


def edgefleet_variants(
    source: bytes, task: str, evaluation: bytes, calibration: bytes | None, key: Any
) -> list[Variant]:
    out = []
    ref = modeldeployment.DatasetRef(uri="https://models.example.com/evaluation.npz", sha256="0" * 64)
    for precision in ("auto", "fp32", "fp16", "int8"):
        target = modeldeployment.CompileTarget(name="host", precision=precision, evaluation=ref)
        start = time.perf_counter()
        try:
            result = pipeline.compile_model(
                source,
                target,
                task,
                evaluation=evaluation,
                calibration=calibration,
                model_name="m",
                model_version="1.0.0",
            )
            bundle.build(result.manifest, result.model, key)  # publishing is part of what a user waits for
        except Exception as exc:  # an explicit precision may be unreachable: report it
            first = str(exc).splitlines()[0]
            out.append(Variant(f"edgefleet {precision}", b"", 0.0, note=f"failed: {first[:80]}"))
            continue
        out.append(
            Variant(
                f"edgefleet {precision}",
                result.model,
                time.perf_counter() - start,
                note=result.selected.name,
            )
        )
    return out


def bench(
    name: str, task: str, source: bytes, evaluation: bytes, calibration: bytes | None, rounds: int, key: Any
) -> str:
    eval_arrays = datasets.load(evaluation)
    ref_session = measurement.session(source)
    inputs, _ = measurement.signature(ref_session)
    feed = datasets.check_against(eval_arrays, inputs, "evaluation set")
    labels = datasets.labels(eval_arrays)
    calib = []
    if calibration is not None:
        calib_arrays = datasets.check_against(datasets.load(calibration), inputs, "calibration set")
        calib = datasets.samples(calib_arrays, 128)
    reference = measurement.run_dataset(ref_session, feed)
    variants = [Variant("source FP32 (plain onnxruntime)", source, 0.0)]
    variants += plain_tools(source, calib) if calib else []
    variants += edgefleet_variants(source, task, evaluation, calibration, key)

    sessions: dict[str, Any] = {}
    fid: dict[str, dict[str, float]] = {}
    for v in variants:
        if not v.model:
            continue
        try:
            sess = measurement.session(v.model)
        except errors.InvalidSpecError as exc:
            v.note = f"does not load: {str(exc)[:60]}"
            v.model = b""
            continue
        wrapped = _Wrapped(sess) if v.fp16_io else sess
        sessions[v.label] = wrapped
        outputs = measurement.run_dataset(wrapped, feed)
        fid[v.label] = fidelity.measure(task, outputs, reference, labels)
    sample = datasets.samples(dict(feed), 1)[0]
    lat = measurement.latencies(sessions, sample, rounds=rounds, round_seconds=0.05)
    base = lat[variants[0].label]
    lines = [
        f"### {name} ({task}, {len(next(iter(feed.values())))} evaluation samples)",
        "",
        "| variant | size (bytes) | vs FP32 | zlib (bytes) | p50 ms | p95 ms | speed-up | fidelity vs FP32 "
        "| build s | chosen / note |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    src_size = len(source)
    for v in variants:
        if not v.model:
            lines.append(f"| {v.label} | - | - | - | - | - | - | - | - | {v.note} |")
            continue
        lv = lat[v.label]
        lines.append(
            f"| {v.label} | {len(v.model)} | {src_size / len(v.model):.2f}x "
            f"| {len(zlib.compress(v.model, 6))} "
            f"| {lv.p50:.3f} | {lv.p95:.3f} | {base.p50 / lv.p50:.2f}x | "
            f"{selection.format_fidelity(fid[v.label])} | {v.seconds:.1f} | {v.note} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds")
    parser.add_argument("--pretrained", action="store_true", help="also the rapidocr text-line classifier")
    args = parser.parse_args(argv)
    key = bundle.generate_key()
    print(
        f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, batch 1, 1 intra-op thread, "
        f"CPU int8-dot features: {sorted(hardware.cpu_features() & selection.INT8_DOT_FEATURES) or 'none'}"
    )
    tasks = {"digits-cnn": "classification", "vibration-ae": "anomaly-score"}
    for name, task in tasks.items():
        d = EXAMPLES / name
        print()
        print(
            bench(
                name,
                task,
                (d / "model.onnx").read_bytes(),
                (d / "evaluation.npz").read_bytes(),
                (d / "calibration.npz").read_bytes(),
                args.rounds,
                key,
            ),
            flush=True,
        )
    if args.pretrained:
        spec = importlib.util.find_spec("rapidocr_onnxruntime")
        if spec is None or not spec.submodule_search_locations:
            print("\nrapidocr-onnxruntime is not installed; skipped the pretrained model", file=sys.stderr)
            return 0
        models = pathlib.Path(next(iter(spec.submodule_search_locations))) / "models"
        images, labels = examples.text_line_images(128, seed=1)
        calibration, _ = examples.text_line_images(32, seed=2)
        print()
        print(
            bench(
                "rapidocr text-line classifier (pretrained, opset 11, Constant weights)",
                "classification",
                (models / "ch_ppocr_mobile_v2.0_cls_infer.onnx").read_bytes(),
                examples.npz_bytes({"x": images, "labels": labels}),
                examples.npz_bytes({"x": calibration}),
                args.rounds,
                key,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
