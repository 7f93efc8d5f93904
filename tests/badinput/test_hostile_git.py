"""Issue 18 case 8 and the Git minors, with real git: hostile tree entries are positioned errors (plan, sync), the sync
daemon survives them and retries, symlinked manifests are reported, and validate/plan/sync are capped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import git
import pytest

from edgefleet.adapters import gitrepo, manifests
from edgefleet.cli import main as cli
from edgefleet.testing.badinput import COUNTS as tried
from edgefleet.testing.controlplane import ControlPlane

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "fleet-manifests"
SRC = Path(__file__).resolve().parents[2] / "src"
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\ndata: {a: b}\n"


def _git(repo: Path, *args: str, data: bytes | None = None) -> str:
    return (
        subprocess.run(["git", "-C", str(repo), *args], input=data, capture_output=True, check=True)
        .stdout.decode()
        .strip()
    )


def _entry(mode: str, name: bytes, sha: str) -> bytes:
    return mode.encode() + b" " + name + b"\0" + bytes.fromhex(sha)


def hostile_commit(repo: Path, entry_name: bytes, message: str = "hostile") -> str:
    """Commit a tree holding ``fleet/ok.yaml`` and a directory entry called ``entry_name`` (git's own tools only
    warn about such trees; a hostile fork can push one)."""
    blob = _git(repo, "hash-object", "-w", "--stdin", data=(CONFIGMAP % "ok").encode())
    inner = _git(repo, "mktree", data=f"100644 blob {blob}\tx.yaml\n".encode())
    fleet = _git(
        repo, "hash-object", "-t", "tree", "-w", "--literally", "--stdin",
        data=_entry("40000", entry_name, inner) + _entry("100644", b"ok.yaml", blob),
    )  # fmt: skip
    root = _git(repo, "mktree", data=f"040000 tree {fleet}\tfleet\n".encode())
    parent = _git(repo, "rev-parse", "HEAD")
    commit = _git(repo, "commit-tree", root, "-p", parent, "-m", message)
    _git(repo, "update-ref", "refs/heads/main", commit)
    return commit


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "origin"
    (root / "fleet").mkdir(parents=True)
    (root / "fleet" / "a.yaml").write_text(CONFIGMAP % "a")
    gitrepo.init(root, "good")
    return root


@pytest.mark.parametrize("name", [b"..", b".", b".git", b".GIT", b"a\\b"])
def test_plan_reports_hostile_tree_entries_as_positioned_errors(
    repo: Path, name: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _git(repo, "rev-parse", "HEAD")
    hostile_commit(repo, name)
    tried["hostile Git trees"] += 1
    assert cli.main(["plan", "--repo", str(repo), "--base", base, "--head", "main", "--path", "fleet"]) == 1
    err = capsys.readouterr().err
    shown = name.decode()
    assert f"main:fleet/{shown}:1:1: tree entry {shown!r} is not a valid path" in err, err
    assert "Traceback" not in err


def test_symlinked_manifests_are_reported_by_validate_and_plan(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "fleet" / "link.yaml").symlink_to("a.yaml")
    g = git.Repo(repo)
    g.git.add(A=True)
    g.index.commit("symlink")
    tried["symlinked manifests"] += 2
    assert cli.main(["validate", str(repo / "fleet")]) == 1
    assert "link.yaml:1:1: is a symbolic link" in capsys.readouterr().err
    assert cli.main(["plan", "--repo", str(repo), "--base", "HEAD~1", "--head", "HEAD", "--path", "fleet"]) == 1
    assert "HEAD:fleet/link.yaml:1:1: is a symbolic link" in capsys.readouterr().err


def test_validate_caps_the_number_of_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    many = tmp_path / "many"
    many.mkdir()
    for i in range(manifests.MAX_FILES + 1):
        (many / f"f{i:05d}.yaml").write_text(CONFIGMAP % f"c{i}")
    tried["oversized inputs"] += 1
    assert cli.main(["validate", str(many)]) == 1
    assert f"more than {manifests.MAX_FILES} manifest files" in capsys.readouterr().err


@pytest.mark.controlplane
def test_sync_reports_hostile_trees_and_the_daemon_recovers_at_the_next_commit(
    control_plane: ControlPlane, namespace: str, repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile_commit(repo, b"..")
    tried["hostile Git trees"] += 1
    args = [
        "sync", "--repo", f"file://{repo}", "--branch", "main", "--path", "fleet", "--namespace", namespace,
        "--kubeconfig", str(control_plane.kubeconfig), "--cache", str(tmp_path / "cache"),
    ]  # fmt: skip
    assert cli.main([*args, "--once"]) == 1
    err = capsys.readouterr().err
    assert "fleet/..:1:1: tree entry '..' is not a valid path" in err and "Traceback" not in err

    log = tmp_path / "sync.log"
    with open(log, "wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edgefleet.cli.main", *args, "--interval", "0.3"],
            env=dict(os.environ, PYTHONPATH=str(SRC)),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while "tree entry '..'" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert daemon.poll() is None, log.read_text()
        # A fixed commit on top: the daemon, still running, applies it at its next poll.
        (repo / "fleet" / "fixed.yaml").write_text(CONFIGMAP % "fixed")
        g = git.Repo(repo)
        g.git.read_tree("HEAD~1")  # the tree before the hostile commit
        g.git.add("fleet/fixed.yaml")
        g.index.commit("fixed")
        deadline = time.monotonic() + 60
        found = False
        while time.monotonic() < deadline and not found:
            got = control_plane.kubectl("get", "configmap", "fixed", "-n", namespace, "-o", "json", check=False)
            found = got.returncode == 0 and json.loads(got.stdout)["data"] == {"a": "b"}
            time.sleep(0.2)
        assert found, log.read_text()
        assert daemon.poll() is None
    finally:
        daemon.terminate()
        daemon.wait(10)


@pytest.mark.controlplane
def test_sync_refuses_a_fetch_over_the_size_cap(
    control_plane: ControlPlane, namespace: str, repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "blob.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    g = git.Repo(repo)
    g.git.add(A=True)
    g.index.commit("a large file")
    tried["oversized inputs"] += 1
    code = cli.main(
        [
            "sync", "--once", "--repo", f"file://{repo}", "--path", "fleet", "--namespace", namespace,
            "--kubeconfig", str(control_plane.kubeconfig), "--cache", str(tmp_path / "cache"),
            "--max-fetch-bytes", str(1024 * 1024),
        ]
    )  # fmt: skip
    assert code == 1
    assert "would store more than 1048576 bytes; refused" in capsys.readouterr().err
    cached = sum(f.stat().st_size for f in (tmp_path / "cache").rglob("*") if f.is_file())
    assert cached < 2 * 1024 * 1024, cached
