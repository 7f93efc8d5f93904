"""``edgefleet compile`` and ``edgefleet verify`` end to end on the example models, with real onnxruntime."""

from __future__ import annotations

import argparse
import json
import pathlib

import pytest

from edgefleet.cli import compile as compile_cli
from edgefleet.cli import verify as verify_cli

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "models"


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="edgefleet")
    sub = parser.add_subparsers()
    compile_cli.register(sub)
    verify_cli.register(sub)
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


@pytest.fixture
def key(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "keys" / "signing.pem"
    assert cli("compile", "--generate-key", str(path)) == 0
    assert (path.stat().st_mode & 0o777) == 0o600
    return path


def test_compile_then_verify(tmp_path: pathlib.Path, key: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    report = tmp_path / "report.json"
    code = cli(
        "compile",
        str(EXAMPLES / "digits-cnn"),
        "--task",
        "classification",
        "--version",
        "1.2.0",
        "--signing-key",
        str(key),
        "--store",
        str(store),
        "--precision",
        "fp16",
        "--report-json",
        str(report),
    )
    assert code == 0
    bundles = list(store.iterdir())
    assert len(bundles) == 1
    digest = "sha256:" + bundles[0].name.removeprefix("sha256-").removesuffix(".bundle")
    out = capsys.readouterr().out
    assert f"Wrote {bundles[0]} {digest} ({bundles[0].stat().st_size} bytes" in out
    assert "Candidates" in out  # the table, with model and bundle bytes and intervals
    assert "model_bytes" in out and "bundle_bytes" in out and "speedup_90ci" in out
    assert "peak resident memory" in out
    data = json.loads(report.read_text())
    assert data["selected"] == "fp16" and data["digest"] == digest
    assert {c["name"] for c in data["candidates"]} == {"fp32", "fp16"}
    assert data["peakRssBytes"] > 0 and 0 < data["goldenBytes"] <= 256 * 1024
    selected = next(c for c in data["candidates"] if c["name"] == "fp16")
    assert selected["bundleBytes"] == bundles[0].stat().st_size
    assert selected["fidelityIntervals"]["top1Agreement"][1] == 1.0

    pub = key.with_name(key.name + ".pub")
    assert cli("verify", str(bundles[0]), "--trust-key", str(pub), "--digest", digest) == 0
    verified = capsys.readouterr().out
    assert "OK " + digest in verified and "golden samples 3 (in golden.bin" in verified

    tampered = tmp_path / "tampered.bundle"
    raw = bytearray(bundles[0].read_bytes())
    header = raw.index(b"model.onnx\0")  # the tar header of model.onnx; its data follows the 512-byte header
    raw[header + 512 + 1000] ^= 0xFF
    tampered.write_bytes(bytes(raw))
    assert cli("verify", str(tampered), "--trust-key", str(pub)) == 1
    assert "verification failed" in capsys.readouterr().err


def test_unreachable_budget_writes_nothing(
    tmp_path: pathlib.Path, key: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    code = cli(
        "compile",
        str(EXAMPLES / "vibration-ae"),
        "--task",
        "anomaly-score",
        "--signing-key",
        str(key),
        "--store",
        str(store),
        "--precision",
        "int8",
        "--quant-method",
        "dynamic",
        "--max-relative-error",
        "0.0001",
        "--quiet",
    )
    assert code == 1
    assert not store.exists()
    err = capsys.readouterr().err
    assert "precision int8 cannot meet the accuracy budget" in err
    assert "int8-dynamic" in err and "> budget 0.0001" in err
    # remedies in the CLI's words, not the ModelDeployment's fields
    assert "--max-accuracy-drop / --max-relative-error" in err and "--exclude-node" in err and "--precision" in err
    assert "spec.compile" not in err and "excludeNodes" not in err


def test_missing_inputs_are_reported(
    tmp_path: pathlib.Path, key: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli(
        "compile",
        str(tmp_path / "nope.onnx"),
        "--evaluation",
        str(tmp_path / "e.npz"),
        "--task",
        "regression",
        "--signing-key",
        str(key),
        "--store",
        str(tmp_path / "s"),
    )
    assert code == 1
    assert "nope.onnx: model not found" in capsys.readouterr().err
    assert cli("compile", "--generate-key", str(key)) == 1  # never overwrites a key
