"""`edgefleet plan` on a real two-commit Git repository reports exactly the changes made between them."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import git
import pytest

from edgefleet.adapters import gitrepo
from edgefleet.cli import main as cli
from edgefleet.testing import controlplane

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "fleet-manifests"


@pytest.fixture
def repo(tmp_path: Path) -> git.Repo:
    shutil.copytree(EXAMPLES, tmp_path / "fleet")
    return gitrepo.init(tmp_path / "fleet", "Initial fleet")


def commit(repo: git.Repo, message: str) -> str:
    repo.git.add(A=True)
    return repo.index.commit(message).hexsha


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_plan_reports_exactly_the_changes(repo: git.Repo, capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(repo.working_dir)
    edit(root / "base" / "weld-defect-classifier.yaml", "version: 1.3.0", "version: 1.4.0")
    edit(root / "base" / "vibration-anomaly.yaml", "maxUnavailable: 2", "maxUnavailable: 3")
    (root / "base" / "extra.yaml").write_text(
        (root / "base" / "vibration-anomaly.yaml")
        .read_text()
        .replace("name: vibration-anomaly\n", "name: vib-b\n", 1)
        .replace("name: vibration-anomaly\n", "name: vibration-b\n", 1)
    )
    head = commit(repo, "Bump weld to 1.4.0, widen vibration rollout, add vib-b")
    code = cli.main(["plan", "--repo", str(root), "--base", "HEAD~1", "--head", head, "--output", "json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    summary = {
        (o["name"], o["action"]): [(c["path"], c["before"], c["after"]) for c in o["changes"]]
        for o in report["objects"]
    }
    assert summary == {
        ("vib-b", "added"): [],
        ("vibration-anomaly", "changed"): [("spec.rollout.maxUnavailable", 2, 3)],
        ("weld-defect-classifier", "changed"): [("spec.model.version", "1.3.0", "1.4.0")],
    }
    rollouts = {r["deployment"]: r for r in report["rollouts"]}
    assert set(rollouts) == {"vib-b", "vibration-anomaly", "weld-defect-classifier"}
    assert rollouts["weld-defect-classifier"]["from_version"] == "1.3.0"
    assert len(rollouts["weld-defect-classifier"]["devices"]) == 20  # weld devices of both plants


def test_plan_markdown_and_no_changes(repo: git.Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "--repo", repo.working_dir, "--base", "HEAD", "--head", "HEAD"]) == 0
    assert "No changes to edgefleet resources." in capsys.readouterr().out


def test_plan_refuses_an_invalid_head(repo: git.Repo, capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(repo.working_dir)
    edit(root / "base" / "weld-defect-classifier.yaml", "- setWeight: 50", "- setWeight: 5")
    commit(repo, "Break the steps")
    assert cli.main(["plan", "--repo", str(root), "--base", "HEAD~1"]) == 1
    err = capsys.readouterr().err
    assert "HEAD:base/weld-defect-classifier.yaml:" in err and "setWeight values must strictly increase" in err


def test_plan_unknown_revision(repo: git.Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "--repo", repo.working_dir, "--base", "nope"]) == 1
    assert "unknown revision 'nope'" in capsys.readouterr().err


def test_plan_with_inventory_file(repo: git.Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(repo.working_dir)
    edit(root / "base" / "weld-defect-classifier.yaml", "version: 1.3.0", "version: 1.3.1")
    commit(repo, "Patch release")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "apiVersion: v1\nkind: List\nitems:\n"
        + "".join(
            f"  - apiVersion: edgefleet.io/v1alpha1\n    kind: EdgeDevice\n    metadata:\n      name: d{i}\n"
            f"      namespace: plant-north\n      labels:\n        edgefleet.io/role: weld-inspection\n"
            f"        edgefleet.io/hardware-class: x86-avx2\n"
            for i in range(10)
        )
    )
    assert cli.main(["plan", "--repo", str(root), "--base", "HEAD~1", "--inventory", str(inventory)]) == 0
    out = capsys.readouterr().out
    assert "10 devices targeted" in out
    assert "| 1 | 10% | 1: plant-north/d" in out


@pytest.mark.controlplane
def test_plan_from_a_cluster_marks_devices_whose_lease_expired(
    repo: git.Repo, control_plane: controlplane.ControlPlane, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(repo.working_dir)
    edit(root / "base" / "weld-defect-classifier.yaml", "version: 1.3.0", "version: 1.3.1")
    commit(repo, "Patch release")
    now = dt.datetime.now(dt.UTC)
    for i in range(10):
        labels = {"edgefleet.io/role": "weld-inspection", "edgefleet.io/hardware-class": "x86-avx2"}
        device = {"apiVersion": "edgefleet.io/v1alpha1", "kind": "EdgeDevice",
                  "metadata": {"name": f"d{i}", "namespace": namespace, "labels": labels}}  # fmt: skip
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(device))
    args = ["plan", "--repo", str(root), "--base", "HEAD~1", "--kubeconfig", str(control_plane.kubeconfig)]

    def lease(name: str, renewed: dt.datetime) -> None:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 300,
                         "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}  # fmt: skip
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(body))

    for i in range(10):
        lease(f"d{i}", now)
    assert cli.main([*args, "--output", "json"]) == 0
    preview = json.loads(capsys.readouterr().out)["rollouts"][0]
    mine = [d for d in preview["devices"] if d["namespace"] == namespace]
    (canary,) = [d["device"] for d in mine if d["wave"] == 1]
    assert not any(d["unreachable"] for d in mine)
    lease(canary, now - dt.timedelta(hours=2))  # its agent stopped renewing two hours ago
    assert cli.main([*args, "--output", "json"]) == 0
    preview = json.loads(capsys.readouterr().out)["rollouts"][0]
    mine = {d["device"]: d for d in preview["devices"] if d["namespace"] == namespace}
    assert mine[canary]["unreachable"] and mine[canary]["wave"] == 3
    assert [n for n, d in mine.items() if d["wave"] == 1] != [canary]
    assert cli.main(args) == 0
    assert f"{namespace}/{canary} (unreachable)" in capsys.readouterr().out
