"""`edgefleet validate`: the examples pass; every broken manifest fails with a precise, positioned message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefleet.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "fixtures" / "bad-manifests"
BAD_FILES = sorted(BAD.glob("*.yaml"))


def expectation(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path} lacks an expectation header"
    return first.removeprefix("# expect: ")


def test_examples_validate_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(ROOT / "examples" / "fleet-manifests")]) == 0
    out = capsys.readouterr()
    assert "0 errors, 0 warnings" in out.out


def test_there_are_at_least_15_broken_manifests() -> None:
    assert len(BAD_FILES) >= 15


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.stem)
def test_broken_manifest_fails_with_positioned_message(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(BAD)
    assert cli.main(["validate", path.name]) == 1
    err = capsys.readouterr().err
    expected = f"{path.name}:{expectation(path)}"
    assert expected in err, f"expected {expected!r} in:\n{err}"


def test_json_output_for_bots(capsys: pytest.CaptureFixture[str]) -> None:
    path = BAD / "weights-decreasing.yaml"
    assert cli.main(["validate", "--output", "json", str(path)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == 1
    (diag,) = report["diagnostics"]
    assert (diag["line"], diag["column"], diag["field"]) == (28, 5, "spec.rollout.steps")


def test_missing_path_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(tmp_path / "nope")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


def test_oversized_file_is_refused_quickly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (9 * 1024 * 1024) + "\n")
    assert cli.main(["validate", str(big)]) == 1
    assert "split it" in capsys.readouterr().err


def test_strict_turns_warnings_into_errors(tmp_path: Path) -> None:
    device = tmp_path / "d.yaml"
    device.write_text("apiVersion: edgefleet.io/v1alpha1\nkind: EdgeDevice\nmetadata:\n  name: d1\n")
    assert cli.main(["validate", str(device)]) == 0
    assert cli.main(["validate", "--strict", str(device)]) == 1
