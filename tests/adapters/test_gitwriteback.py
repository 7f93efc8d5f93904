"""Rollbacks written back to Git, against a real Git server on 127.0.0.1 (``git http-backend`` over smart HTTP)."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
from pathlib import Path

import yaml

from edgefleet.adapters import gitwriteback
from edgefleet.api import modeldeployment
from edgefleet.core import revisions, writeback
from edgefleet.testing import gitserver

NOW = dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC)
MANIFEST = """\
# The adder model; bump version, uri and sha256 together.
apiVersion: edgefleet.io/v1alpha1
kind: ModelDeployment
metadata:
  name: adder
spec:
  model:
    name: adder
    version: {version}
    uri: https://models.example.com/adder/{version}.onnx   # the release bucket
    sha256: {sha}
    task: regression
  compile:
    targets:
      - name: x86
        evaluation:
          uri: https://models.example.com/adder/eval.npz
          sha256: {eval}
  selector:
    matchLabels: {{app: adder}}
  rollout:
    steps:
{steps}
"""
STEPS_A = "      - setWeight: 10\n      - setWeight: 100\n"
STEPS_B = "      - setWeight: 20\n      - analysis: {durationSeconds: 60}\n      - setWeight: 100\n"


def manifest(version: str, steps: str) -> str:
    sha = hashlib.sha256(version.encode()).hexdigest()
    return MANIFEST.format(version=version, sha=sha, eval="e" * 64, steps=steps)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def fleet_repo(tmp: Path, url: str) -> Path:
    """main: commit 1 adder 2.0.0; commit 2 adder 3.0.0 with new steps and an unrelated README change."""
    gitserver.bare(tmp / "srv", "fleet")
    work = tmp / "work"
    git(tmp, "clone", "--quiet", f"{url}/fleet.git", str(work))
    git(work, "config", "user.name", "Fleet Team")
    git(work, "config", "user.email", "fleet@example.com")
    (work / "base").mkdir()
    (work / "base" / "adder.yaml").write_text(manifest("2.0.0", STEPS_A))
    (work / "README.md").write_text("fleet\n")
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", "adder 2.0.0")
    (work / "base" / "adder.yaml").write_text(manifest("3.0.0", STEPS_B))
    (work / "README.md").write_text("fleet, now with 3.0.0\n")
    git(work, "commit", "--quiet", "-am", "adder 3.0.0, slower canary")
    git(work, "push", "--quiet", "origin", "main")
    return work


def deployment(version: str, steps: str) -> modeldeployment.ModelDeployment:
    body = yaml.safe_load(manifest(version, steps))
    body["metadata"]["namespace"] = "plant"
    return modeldeployment.ModelDeployment.model_validate(body)


def aborted_status() -> tuple[modeldeployment.ModelDeployment, modeldeployment.ModelDeploymentStatus]:
    md = deployment("3.0.0", STEPS_B)
    stable = revisions.revision_of(deployment("2.0.0", STEPS_A).spec)
    status = modeldeployment.ModelDeploymentStatus(
        stable_revision=stable,
        aborted_revision=revisions.revision_of(md.spec),
        rollout_failure=modeldeployment.RolloutFailure(revision="x", message="dev-02: error rate 0.50 > 0.01"),
    )
    return md, status


def remote_branches(url: str) -> dict[str, str]:
    out = subprocess.run(
        ["git", "ls-remote", "--heads", f"{url}/fleet.git"], check=True, capture_output=True, text=True
    ).stdout
    return {ref.removeprefix("refs/heads/"): sha for sha, ref in (line.split() for line in out.splitlines())}


def test_the_revert_is_one_branch_one_file_pushed_once(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    with gitserver.served(tmp_path / "srv") as url:
        fleet_repo(tmp_path, url)
        md, status = aborted_status()
        config = gitwriteback.Config(repository=f"{url}/fleet.git", branch="main", path="base")
        record = gitwriteback.revert(config, md, status, NOW)
        assert record.outcome == "Pushed", record.message
        branch = writeback.branch_name("plant", "adder", status.aborted_revision or "")
        assert record.branch == branch and record.revision == status.aborted_revision
        branches = remote_branches(url)
        assert set(branches) == {"main", branch} and branches[branch] == record.commit

        check = tmp_path / "check"
        git(tmp_path, "clone", "--quiet", f"{url}/fleet.git", str(check))
        assert git(check, "diff", "--name-only", "origin/main", f"origin/{branch}").split() == ["base/adder.yaml"]
        assert git(check, "rev-list", "--count", f"origin/main..origin/{branch}").strip() == "1"
        reverted = git(check, "show", f"origin/{branch}:base/adder.yaml")
        body = yaml.safe_load(reverted)
        spec = modeldeployment.ModelDeploymentSpec.model_validate(body["spec"])
        assert revisions.revision_of(spec) == status.stable_revision
        assert body["spec"]["rollout"]["steps"][0] == {"setWeight": 20}  # the rollout policy of head stays
        assert "# The adder model" in reverted and "# the release bucket" in reverted  # comments stay
        log = git(check, "log", "-1", "--format=%an%n%B", f"origin/{branch}")
        assert log.startswith("edgefleet-operator\nRoll back plant/adder to 2.0.0-") and "error rate 0.50" in log

        # Idempotent: a second run (a restart, another replica) finds the branch and leaves it alone.
        again = gitwriteback.revert(config, md, status, NOW)
        assert again.outcome == "AlreadyPushed" and remote_branches(url) == branches


def test_an_existing_branch_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    with gitserver.served(tmp_path / "srv") as url:
        work = fleet_repo(tmp_path, url)
        md, status = aborted_status()
        branch = writeback.branch_name("plant", "adder", status.aborted_revision or "")
        git(work, "checkout", "--quiet", "-b", branch)
        (work / "NOTES.md").write_text("someone else's fix\n")
        git(work, "add", "NOTES.md")
        git(work, "commit", "--quiet", "-m", "a person's fix")
        git(work, "push", "--quiet", "origin", branch)
        before = remote_branches(url)
        record = gitwriteback.revert(gitwriteback.Config(repository=f"{url}/fleet.git"), md, status, NOW)
        assert record.outcome == "AlreadyPushed" and "never force-pushed" in record.message
        assert remote_branches(url) == before


def test_a_pull_request_is_opened_with_a_token(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    forge = gitserver.PullRequests()
    with gitserver.served(tmp_path / "srv") as url, forge.running() as api:
        fleet_repo(tmp_path, url)
        md, status = aborted_status()
        config = gitwriteback.Config(
            repository=f"{url}/fleet.git", token="s3cret", forge_api=api, forge_repo="factory/fleet"
        )
        record = gitwriteback.revert(config, md, status, NOW)
        assert record.outcome == "Pushed" and record.pull_request == "http://forge.test/factory/fleet/pulls/1"
        (request,) = forge.requests
        assert request["path"] == "/api/v1/repos/factory/fleet/pulls" and request["authorization"] == "token s3cret"
        assert request["body"]["head"] == record.branch and request["body"]["base"] == "main"
        assert request["body"]["title"].startswith("Roll back plant/adder to 2.0.0-")


def test_failures_push_nothing_and_say_why(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    with gitserver.served(tmp_path / "srv") as url:
        fleet_repo(tmp_path, url)
        md, status = aborted_status()
        other = md.model_copy(update={"metadata": md.metadata.model_copy(update={"name": "nobody"})})
        record = gitwriteback.revert(gitwriteback.Config(repository=f"{url}/fleet.git"), other, status, NOW)
        assert record.outcome == "Failed" and "no manifest of ModelDeployment plant/nobody" in record.message
        unknown = status.model_copy(update={"stable_revision": "1.0.0-0000000000"})
        record = gitwriteback.revert(gitwriteback.Config(repository=f"{url}/fleet.git"), md, unknown, NOW)
        assert record.outcome == "Failed" and "has the stable revision 1.0.0-0000000000" in record.message
        record = gitwriteback.revert(gitwriteback.Config(repository="ext::sh -c touch% /tmp/pwned"), md, status, NOW)
        assert record.outcome == "Failed" and "must be https://" in record.message
        assert set(remote_branches(url)) == {"main"}


def test_the_token_never_follows_a_redirect(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    elsewhere = gitserver.PullRequests()
    with gitserver.served(tmp_path / "srv") as url, elsewhere.running() as other:
        forge = gitserver.PullRequests(redirect=other.removesuffix("/api/v1"))
        with forge.running() as api:
            fleet_repo(tmp_path, url)
            md, status = aborted_status()
            config = gitwriteback.Config(
                repository=f"{url}/fleet.git", token="s3cret", forge_api=api, forge_repo="factory/fleet"
            )
            record = gitwriteback.revert(config, md, status, NOW)
    # The branch is pushed; the pull request is not opened, and the server redirected to never saw the token.
    assert record.outcome == "Pushed" and record.pull_request is None
    assert "no pull request: the forge answered 302 (a redirect, not followed" in record.message
    assert len(forge.requests) == 1 and elsewhere.requests == []
