"""`edgefleet sync` against a real Git repository and a real API server: apply, stamp, prune, refuse bad commits."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest

from edgefleet.adapters import gitrepo
from edgefleet.cli import main as cli
from edgefleet.core import syncplan
from edgefleet.testing.controlplane import ControlPlane

pytestmark = pytest.mark.controlplane

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "fleet-manifests"


@pytest.fixture
def fleet_repo(tmp_path: Path) -> git.Repo:
    root = tmp_path / "origin"
    (root / "fleet").mkdir(parents=True)
    for name in ("weld-defect-classifier.yaml", "vibration-anomaly.yaml"):
        (root / "fleet" / name).write_text((EXAMPLES / "base" / name).read_text())
    devices = (EXAMPLES / "sites" / "plant-north" / "devices.yaml").read_text()
    (root / "fleet" / "devices.yaml").write_text(devices)
    (root / "README.md").write_text("not a manifest\n")
    return gitrepo.init(root, "Initial fleet")


def sync(cp: ControlPlane, repo: git.Repo, namespace: str, cache: Path) -> int:
    return cli.main(
        [
            "sync", "--once", "--repo", f"file://{repo.working_dir}", "--branch", "main", "--path", "fleet",
            "--namespace", namespace, "--kubeconfig", str(cp.kubeconfig), "--cache", str(cache),
        ]
    )  # fmt: skip


def get_json(cp: ControlPlane, *args: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(cp.kubectl("get", *args, "-o", "json").stdout)
    return result


def test_sync_applies_stamps_prunes_and_refuses_bad_commits(
    control_plane: ControlPlane,
    namespace: str,
    fleet_repo: git.Repo,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cache = tmp_path / "cache"
    first = fleet_repo.head.commit.hexsha
    assert sync(control_plane, fleet_repo, namespace, cache) == 0
    weld = get_json(control_plane, "md", "weld-defect-classifier", "-n", namespace)
    meta = weld["metadata"]
    assert isinstance(meta, dict)
    assert meta["annotations"][syncplan.ANNOTATION_COMMIT] == first
    assert meta["annotations"][syncplan.ANNOTATION_PATH] == "fleet/weld-defect-classifier.yaml"
    assert len(get_json(control_plane, "ed", "-n", namespace)["items"]) == 18  # type: ignore[arg-type]

    # An object the sync did not create must survive pruning.
    control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input="apiVersion: edgefleet.io/v1alpha1\nkind: EdgeDevice\nmetadata:\n  name: hand-made\n",
    )  # fmt: skip

    # Merge a pull request: bump weld, delete the vibration deployment.
    root = Path(fleet_repo.working_dir)
    manifest = root / "fleet" / "weld-defect-classifier.yaml"
    manifest.write_text(manifest.read_text().replace("version: 1.3.0", "version: 1.4.0"))
    fleet_repo.index.remove([str(root / "fleet" / "vibration-anomaly.yaml")], working_tree=True)
    fleet_repo.git.add(A=True)
    second = fleet_repo.index.commit("Roll out weld 1.4.0, retire vibration-anomaly").hexsha
    assert sync(control_plane, fleet_repo, namespace, cache) == 0
    assert "1 pruned" in capsys.readouterr().out
    names = control_plane.kubectl("get", "md", "-n", namespace, "-o", "name").stdout.split()
    assert names == ["modeldeployment.edgefleet.io/weld-defect-classifier"]
    weld = get_json(control_plane, "md", "weld-defect-classifier", "-n", namespace)
    assert weld["spec"]["model"]["version"] == "1.4.0"  # type: ignore[index]
    assert weld["metadata"]["annotations"][syncplan.ANNOTATION_COMMIT] == second  # type: ignore[index]
    assert "hand-made" in control_plane.kubectl("get", "ed", "-n", namespace, "-o", "name").stdout

    # A commit that does not validate changes nothing: neither the weld update nor the device deletions apply.
    manifest.write_text(manifest.read_text().replace("- setWeight: 50", "- setWeight: 5"))
    (root / "fleet" / "devices.yaml").unlink()
    fleet_repo.git.add(A=True)
    fleet_repo.index.commit("Broken steps, remove devices")
    assert sync(control_plane, fleet_repo, namespace, cache) == 1
    err = capsys.readouterr().err
    assert "does not validate; nothing applied" in err and "setWeight values must strictly increase" in err
    weld = get_json(control_plane, "md", "weld-defect-classifier", "-n", namespace)
    assert weld["metadata"]["annotations"][syncplan.ANNOTATION_COMMIT] == second  # type: ignore[index]
    assert len(get_json(control_plane, "ed", "-n", namespace)["items"]) == 19  # type: ignore[arg-type]


def test_sync_rejects_remote_helper_urls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgefleet.adapters import gitsource
    from edgefleet.core import errors

    with pytest.raises(errors.InvalidSpecError, match="must be https"):
        gitsource.check_url("ext::sh -c touch% /tmp/pwned")
    with pytest.raises(errors.InvalidSpecError, match="invalid branch"):
        gitsource.check_branch("--upload-pack=touch /tmp/x")
