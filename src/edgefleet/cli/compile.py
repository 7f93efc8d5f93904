"""``edgefleet compile``: compile an ONNX model for a hardware class into a signed, content-addressed bundle.

Examples::

    edgefleet compile --generate-key keys/signing.pem          # once: writes signing.pem and signing.pem.pub
    edgefleet compile examples/models/digits-cnn --task classification --name digits --version 1.0.0 \\
        --signing-key keys/signing.pem --store bundles/

A directory argument means ``<dir>/model.onnx`` with ``<dir>/evaluation.npz`` and ``<dir>/calibration.npz``.
The compiler (:func:`edgefleet.compiler.pipeline.compile_model`) returns the unsigned bundle members; this command
signs them with ``--signing-key`` and writes the bundle to ``<store>/sha256-<hex>.bundle``, only when compilation
succeeds and the bundle passes the checks a device applies (:func:`edgefleet.adapters.bundle.build` opens it before
it is written). An unreachable accuracy budget prints the report of every candidate and exits 1 with nothing
written; remedies name this command's flags.

The table shows, per candidate, model bytes and bundle bytes, latency and its speed-up over FP32 with a 90 %
interval, and fidelity with 90 % intervals; the selected variant is starred. ``--memory-budget`` (default 3Gi)
bounds how calibration and evaluation are split; the peak resident memory is printed. With ``--target-features``
of another hardware class than this host's, host timings do not stand for the target: ``auto`` ships FP32 unless
``--device-benchmark`` gives latencies measured on a device of that class (JSON ``{"candidate": {"p50": ms,
"p95": ms, "rounds": [ms, ...]}}``, as ``edgefleet-agent`` reports them).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from typing import Any

from edgefleet.adapters import bundle
from edgefleet.api import modeldeployment
from edgefleet.compiler import hardware, jobs, memory, pipeline, selection, sources, vocabulary
from edgefleet.core import errors


def register(subparsers: Any) -> None:
    """Add the ``compile`` verb."""
    p = subparsers.add_parser(
        "compile",
        help="compile an ONNX model into a signed bundle for one hardware class",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("model", nargs="?", type=pathlib.Path, help="FP32 .onnx file, or a directory holding model.onnx")
    p.add_argument("--evaluation", type=pathlib.Path, help=".npz evaluation set (one array per input, labels)")
    p.add_argument("--calibration", type=pathlib.Path, help=".npz calibration set for static INT8")
    p.add_argument("--task", choices=["classification", "detection", "regression", "anomaly-score", "other"])
    p.add_argument("--name", help="model name (default: the directory or file stem)")
    p.add_argument("--version", default="0.1.0", help="model semantic version (default 0.1.0)")
    p.add_argument("--signing-key", type=pathlib.Path, help="ed25519 PEM private key")
    p.add_argument("--store", type=pathlib.Path, help="directory receiving <digest>.bundle")
    p.add_argument("--target", default="host", help="hardware class name (default host)")
    p.add_argument("--target-features", help="comma-separated ISA flags of the target (default: this host's)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads a device gives the model (default 1)")
    p.add_argument("--precision", choices=["auto", "int8", "fp16", "fp32"], default="auto")
    p.add_argument("--optimize-for", choices=["latency", "size"], default="latency")
    p.add_argument("--max-accuracy-drop", type=float, default=0.01)
    p.add_argument("--max-relative-error", type=float, default=0.01)
    p.add_argument("--quant-method", choices=["auto", "dynamic", "static"], default="auto")
    p.add_argument("--quant-format", choices=["auto", "QDQ", "QOperator"], default="auto")
    p.add_argument("--calibration-method", choices=["auto", "MinMax", "Entropy", "Percentile"], default="auto")
    p.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--exclude-node", action="append", default=[], help="node kept in float (repeatable)")
    p.add_argument("--prune", type=float, help="magnitude-prune this share of weights first (0-0.95)")
    p.add_argument(
        "--memory-budget",
        default="3Gi",
        help="resident memory the compile plans within, e.g. 2Gi (default 3Gi)",
    )
    p.add_argument(
        "--device-benchmark",
        type=pathlib.Path,
        help="JSON latencies per candidate measured on a device of the target class (replaces host timings)",
    )
    p.add_argument("--report-json", type=pathlib.Path, help="write every candidate's numbers here")
    p.add_argument("--generate-key", type=pathlib.Path, metavar="PATH", help="write a new signing key and exit")
    p.add_argument("--quiet", action="store_true", help="no progress or table")
    p.set_defaults(func=run)


def _write_atomic(path: pathlib.Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def generate_key(path: pathlib.Path) -> int:
    """Write a new ed25519 signing key (0600) and its public key (``.pub``)."""
    if path.exists():
        print(f"{path}: already exists; refusing to overwrite a signing key", file=sys.stderr)
        return 1
    key = bundle.generate_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, bundle.private_key_pem(key), 0o600)
    _write_atomic(path.with_name(path.name + ".pub"), bundle.public_key_pem(key.public_key()))
    print(f"Wrote signing key {path} and trust key {path}.pub (key id {bundle.key_id(key.public_key())})")
    return 0


def run(args: argparse.Namespace) -> int:
    """Compile, print the candidate table, write the bundle; exit 1 on an unusable spec or budget."""
    if args.generate_key is not None:
        return generate_key(args.generate_key)
    missing = [
        flag
        for flag, value in (
            ("MODEL", args.model),
            ("--task", args.task),
            ("--signing-key", args.signing_key),
            ("--store", args.store),
        )
        if not value
    ]
    if missing:
        print(f"edgefleet compile: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    model_path: pathlib.Path = args.model
    evaluation_path, calibration_path = args.evaluation, args.calibration
    if model_path.is_dir():
        evaluation_path = evaluation_path or model_path / "evaluation.npz"
        if calibration_path is None and (model_path / "calibration.npz").is_file():
            calibration_path = model_path / "calibration.npz"
        name = args.name or model_path.name
        model_path = model_path / "model.onnx"
    else:
        name = args.name or model_path.stem
    if evaluation_path is None:
        print("edgefleet compile: --evaluation is required for a model file", file=sys.stderr)
        return 2
    try:
        budget = memory.parse_bytes(args.memory_budget)
    except ValueError:
        print(f"edgefleet compile: --memory-budget {args.memory_budget!r} is not a size such as 3Gi", file=sys.stderr)
        return 2
    if budget < memory.MIN_BUDGET_BYTES:
        print(f"edgefleet compile: --memory-budget must be at least {memory.format_bytes(memory.MIN_BUDGET_BYTES)}")
        return 2
    try:
        source = sources.read(model_path, "model")
        evaluation = sources.read(evaluation_path, "evaluation set")
        calibration = sources.read(calibration_path, "calibration set") if calibration_path else None
        key = bundle.load_private_key(sources.read(args.signing_key, "signing key"))
        target = _target(args, evaluation, calibration)
        benchmarks = _device_benchmark(args.device_benchmark) if args.device_benchmark else None
    except (OSError, ValueError, errors.EdgefleetError, bundle.BundleError) as exc:
        print(f"edgefleet compile: {exc}", file=sys.stderr)
        return 1
    features = (
        frozenset(f.strip() for f in args.target_features.split(",") if f.strip())
        if args.target_features
        else hardware.cpu_features()
    )
    target_hardware = hardware.Hardware(name=args.target, features=features, threads=args.threads)
    try:
        result = _compile_with_progress(
            args, source, target, evaluation, calibration, name, target_hardware, budget, benchmarks
        )
        # Signed once, here, where the bundle is published; build() opens it as a device would first.
        digest, data = bundle.build(result.manifest, result.model, key, result.golden)
    except (errors.InvalidSpecError, bundle.BundleError) as exc:
        print(f"{model_path}: {exc}", file=sys.stderr)
        return 1
    args.store.mkdir(parents=True, exist_ok=True)
    out = args.store / f"{digest.replace(':', '-')}.bundle"
    _write_atomic(out, data)
    if args.report_json:
        _write_atomic(args.report_json, json.dumps(_report(result, digest), indent=2, sort_keys=True).encode())
    if not args.quiet:
        _print_table(result, len(data))
        for note in result.notes:
            print(f"  {note}")
    print(
        f"Compiled {name} {args.version} for {args.target}: {result.selected.name} ({result.reason}; {result.detail})"
    )
    print(f"Wrote {out} {digest} ({len(data)} bytes: model {len(result.model)}, golden {len(result.golden or b'')})")
    return 0


def _device_benchmark(path: pathlib.Path) -> dict[str, selection.Latency]:
    """Latencies per candidate from a JSON file (see the module docstring); ValueError naming what is wrong."""
    raw = json.loads(sources.read(path, "device benchmark", limit=1024 * 1024))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: must be a JSON object of candidate name -> {{p50, p95, rounds}}")
    out = {}
    for name, entry in raw.items():
        try:
            out[str(name)] = selection.Latency(
                float(entry["p50"]), float(entry["p95"]), tuple(float(r) for r in entry.get("rounds", []))
            )
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: entry {name!r} needs numeric p50, p95 and optional rounds ({exc})") from exc
    return out


def _target(args: argparse.Namespace, evaluation: bytes, calibration: bytes | None) -> modeldeployment.CompileTarget:
    import hashlib

    # Local files have no URI; the reserved .invalid domain marks the refs as placeholders (the compiler
    # hashes
    # the bytes it is given and records those digests in the manifest).
    def ref(data: bytes, what: str) -> modeldeployment.DatasetRef:
        return modeldeployment.DatasetRef(
            uri=f"https://local.invalid/{what}.npz", sha256=hashlib.sha256(data).hexdigest()
        )

    quantization = modeldeployment.QuantizationOptions(
        method=args.quant_method,
        format=args.quant_format,
        per_channel=args.per_channel,
        calibration_method=args.calibration_method,
        reduce_range=args.reduce_range,
        exclude_nodes=args.exclude_node or None,
    )
    return modeldeployment.CompileTarget(
        name=args.target,
        precision=args.precision,
        optimize_for=args.optimize_for,
        quantization=quantization,
        pruning=modeldeployment.PruningOptions(sparsity=args.prune) if args.prune else None,
        calibration=ref(calibration, "calibration") if calibration is not None else None,
        evaluation=ref(evaluation, "evaluation"),
        accuracy_budget=modeldeployment.AccuracyBudget(
            max_accuracy_drop=args.max_accuracy_drop, max_relative_error=args.max_relative_error
        ),
    )


def _compile_with_progress(
    args: argparse.Namespace,
    source: bytes,
    target: modeldeployment.CompileTarget,
    evaluation: bytes,
    calibration: bytes | None,
    name: str,
    target_hardware: hardware.Hardware,
    budget: int,
    benchmarks: dict[str, selection.Latency] | None,
) -> jobs.CompiledModel:
    def compile_(progress: pipeline.Progress | None) -> jobs.CompiledModel:
        return pipeline.compile_model(
            source,
            target,
            args.task,
            evaluation=evaluation,
            calibration=calibration,
            model_name=name,
            model_version=args.version,
            target_hardware=target_hardware,
            device_benchmarks=benchmarks,
            effort=pipeline.Effort(memory_budget_bytes=budget),
            progress=progress,
            words=vocabulary.CLI,
        )

    if args.quiet:
        return compile_(None)
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task_id = progress.add_task("Compiling", total=None)
        return compile_(lambda message: progress.update(task_id, description=message))


def _print_table(result: jobs.CompiledModel, bundle_bytes: int) -> None:
    from rich.console import Console
    from rich.table import Table

    choice = selection.Choice(result.selected, result.reason, {}, result.detail)
    sizes = {**result.bundle_bytes, result.selected.name: bundle_bytes}
    rows = selection.report_rows(result.candidates, choice, sizes)
    verdicts = {c["name"]: c["verdict"] for c in result.manifest["measurements"]["candidates"]}
    table = Table(title="Candidates (* = selected; bundle bytes of the others as they would be published)")
    numeric = ("model_bytes", "bundle_bytes", "ratio", "p50_ms", "p95_ms", "speedup", "speedup_90ci")
    for column in rows[0]:
        table.add_column(column, justify="right" if column in numeric else "left")
    for row, candidate in zip(rows, result.candidates, strict=True):
        row["verdict"] = verdicts.get(candidate.name, "")
        table.add_row(*row.values())
    console = Console()
    if not console.is_terminal:
        console = Console(width=260)
    console.print(table)


def _report(result: jobs.CompiledModel, digest: str) -> dict[str, Any]:
    verdicts = {c["name"]: c["verdict"] for c in result.manifest["measurements"]["candidates"]}
    return {
        "digest": digest,
        "selected": result.selected.name,
        "reason": result.reason,
        "detail": result.detail,
        "peakRssBytes": result.peak_rss_bytes,
        "goldenBytes": len(result.golden or b""),
        "notes": list(result.notes),
        "candidates": [
            {
                "name": c.name,
                "precision": c.precision,
                "sizeBytes": c.size_bytes,
                "compressedBytes": c.compressed_bytes,
                "bundleBytes": result.bundle_bytes.get(c.name),
                "latencyP50Ms": c.latency.p50 if c.latency else None,
                "latencyP95Ms": c.latency.p95 if c.latency else None,
                "fidelity": {k: (v if v == v and abs(v) != float("inf") else None) for k, v in c.fidelity.items()},
                "fidelityIntervals": {
                    k: [(x if x == x and abs(x) != float("inf") else None) for x in v] for k, v in c.intervals.items()
                },
                "verdict": verdicts.get(c.name),
                "error": c.error,
                "options": c.options,
                "compileSeconds": c.compile_seconds,
            }
            for c in result.candidates
        ],
    }
