"""The real operator writes the revert of an automatic abort back to a real Git server (``git http-backend`` on
127.0.0.1) and opens a pull request through the forge API (a recording stand-in: no real forge is built here)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from edgefleet.core import writeback
from edgefleet.testing import adder, controlplane, fleetstack, gitserver
from edgefleet.testing.devices import SimulatedFleet

pytestmark = pytest.mark.controlplane
STEPS = [{"setWeight": 20}, {"setWeight": 100}]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def as_yaml(body: str) -> str:
    doc = json.loads(body)
    doc["metadata"].pop("namespace")  # as in a base that a site overlay puts into its namespace
    return "# adder, rolled out by the operator under test\n" + yaml.safe_dump(doc, sort_keys=False)


def test_an_automatic_abort_is_written_back_once(
    control_plane: controlplane.ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    srv = tmp_path / "srv"
    srv.mkdir()
    forge = gitserver.PullRequests()
    with gitserver.served(srv) as url, forge.running() as api:
        gitserver.bare(srv, "fleet")
        env = {
            "EDGEFLEET_WRITEBACK_REPOSITORY": f"{url}/fleet.git",
            "EDGEFLEET_WRITEBACK_BRANCH": "main",
            "EDGEFLEET_WRITEBACK_PATH": "apps",
            "EDGEFLEET_WRITEBACK_TOKEN": "t0ken",
            "EDGEFLEET_WRITEBACK_FORGE_API": api,
            "EDGEFLEET_WRITEBACK_FORGE_REPO": "factory/fleet",
        }
        with fleetstack.running(cp, namespace, tmp_path / "stack", extra_env=env) as stack:
            fleet = SimulatedFleet(
                cp.kubeconfig, namespace, verdict=lambda _d, r: "Unhealthy" if r.startswith("3.0.0") else "Healthy"
            )
            for i in range(6):
                fleet.create(f"dev-{i}", {"app": "adder", "edgefleet.io/line": f"line-{i % 3}"})
            fleet.start()
            try:
                work = tmp_path / "work"
                git(tmp_path, "clone", "--quiet", f"{url}/fleet.git", str(work))
                git(work, "config", "user.name", "Fleet Team")
                git(work, "config", "user.email", "fleet@example.com")
                (work / "apps").mkdir()
                v2 = stack.deployment("2.0.0", STEPS, {}, max_unavailable="50%")
                (work / "apps" / "adder.yaml").write_text(as_yaml(v2))
                (work / "README.md").write_text("fleet\n")
                git(work, "add", "-A")
                git(work, "commit", "--quiet", "-m", "adder 2.0.0")
                git(work, "push", "--quiet", "origin", "main")
                stack.apply(v2)
                log = tmp_path / "stack" / "operator.log"
                adder.wait_for("2.0.0", stack.md_status, lambda s: s.get("phase") == "Healthy", 120, log)

                v3 = stack.deployment("3.0.0", STEPS, {}, max_unavailable="50%")
                (work / "apps" / "adder.yaml").write_text(as_yaml(v3))
                (work / "README.md").write_text("fleet with 3.0.0\n")
                git(work, "commit", "--quiet", "-am", "adder 3.0.0")
                git(work, "push", "--quiet", "origin", "main")
                main_before = git(work, "rev-parse", "origin/main").strip()
                stack.apply(v3)
                done = adder.wait_for(
                    "written back",
                    stack.md_status,
                    lambda s: (s.get("rollbackWriteBack") or {}).get("outcome") in ("Pushed", "Failed"),
                    180,
                    log,
                )
                record = done["rollbackWriteBack"]
                assert record["outcome"] == "Pushed", record
                branch = writeback.branch_name(namespace, "adder", done["abortedRevision"])
                assert record["branch"] == branch and record["revision"] == done["abortedRevision"]
                assert record["pullRequest"] == "http://forge.test/factory/fleet/pulls/1"

                git(work, "fetch", "--quiet", "origin")
                assert git(work, "rev-parse", "origin/main").strip() == main_before  # main is never touched
                assert git(work, "diff", "--name-only", "origin/main", f"origin/{branch}").split() == [
                    "apps/adder.yaml"
                ]
                reverted = yaml.safe_load(git(work, "show", f"origin/{branch}:apps/adder.yaml"))
                assert reverted == yaml.safe_load(as_yaml(v2))  # the spec of the stable revision, exactly
                (pull,) = forge.requests
                assert pull["body"]["head"] == branch and pull["authorization"] == "token t0ken"

                time.sleep(4)  # several resyncs: nothing more is pushed or opened
                heads = git(work, "ls-remote", "--heads", "origin").splitlines()
                assert len(heads) == 2 and len(forge.requests) == 1
                reasons = adder.events(cp, namespace)
                assert reasons.count("RollbackWrittenBack") == 1, reasons
            finally:
                fleet.stop()
