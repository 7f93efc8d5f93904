"""The ``edgefleet status`` / ``rollout`` commands as real processes against the real operator and API server:
plain output in a pipe, ``-A``, ``--context``, ``--watch --timeout`` exit codes, ``promote --full``, ``retry``,
``undo``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgefleet.testing import adder, controlplane, fleetstack
from edgefleet.testing.devices import SimulatedFleet

pytestmark = pytest.mark.controlplane
STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]


def edgefleet(cp: controlplane.ControlPlane, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed ``edgefleet`` command with stdout piped (not a terminal), as in a CI job."""
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, "-m", "edgefleet.cli.main", *argv, "--kubeconfig", str(cp.kubeconfig)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def test_cli_in_a_pipe_with_watch_timeouts_full_promotion_retry_and_undo(
    control_plane: controlplane.ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    bad: set[str] = set()
    with fleetstack.running(cp, namespace, tmp_path) as stack:
        fleet = SimulatedFleet(
            cp.kubeconfig, namespace, verdict=lambda _d, r: "Unhealthy" if r.split("-")[0] in bad else "Healthy"
        )
        for i in range(10):
            fleet.create(f"dev-{i}", {"app": "adder", "edgefleet.io/line": f"line-{i % 3}"})
        fleet.start()
        try:
            probe = stack.md_status
            log = tmp_path / "operator.log"
            stack.apply(stack.deployment("1.0.0", STEPS, {}, max_unavailable="50%"))
            adder.wait_for("1.0.0", probe, lambda s: s.get("phase") == "Healthy", 120, log)

            listing = edgefleet(cp, "status", "-A")
            assert listing.returncode == 0, listing.stderr
            header, *rows = listing.stdout.splitlines()
            assert header.split()[:2] == ["NAMESPACE", "NAME"], listing.stdout
            (row,) = [r for r in rows if r.split()[0] == namespace]
            assert row.split()[1:5] == ["adder", "adder", "1.0.0", "Healthy"]
            assert probe()["stableRevision"] in row.split()  # whole revisions, never folded into 5-char cells
            context = cp.kubectl("config", "current-context").stdout.strip()
            assert edgefleet(cp, "status", "-n", namespace, "--context", context).returncode == 0
            wrong = edgefleet(cp, "status", "-n", namespace, "--context", "no-such-context")
            assert wrong.returncode == 1 and "no-such-context" in wrong.stderr

            stack.apply(stack.deployment("2.0.0", STEPS, {}, max_unavailable="50%"))
            adder.wait_for("paused", probe, lambda s: s.get("phase") == "Paused", 120, log)
            waited = edgefleet(cp, "rollout", "status", "adder", "-n", namespace, "--watch", "--timeout", "2s")
            assert waited.returncode == 3 and "timed out after 2s" in waited.stderr
            assert "> current" in waited.stdout and "pause until promoted" in waited.stdout
            full = edgefleet(cp, "rollout", "promote", "adder", "-n", namespace, "--full")
            assert full.returncode == 0, full.stderr
            done = edgefleet(cp, "rollout", "status", "adder", "-n", namespace, "--watch", "--timeout", "90s")
            assert done.returncode == 0, done.stdout + done.stderr
            assert probe()["stableRevision"].startswith("2.0.0")

            bad.add("3.0.0")
            stack.apply(stack.deployment("3.0.0", STEPS, {}, max_unavailable="50%"))
            failed = edgefleet(cp, "rollout", "status", "adder", "-n", namespace, "--watch", "--timeout", "90s")
            assert failed.returncode == 1, failed.stdout + failed.stderr
            aborted = probe()["abortedRevision"]
            bad.clear()
            assert edgefleet(cp, "rollout", "retry", "adder", "-n", namespace).returncode == 0
            again = adder.wait_for(
                "retried", probe, lambda s: s.get("phase") == "Paused" and s.get("canaryRevision") == aborted, 60, log
            )
            assert again.get("abortedRevision") is None
            undo = edgefleet(cp, "rollout", "undo", "adder", "-n", namespace)
            assert undo.returncode == 0 and "revert the change in Git" in undo.stderr
            adder.wait_for("undone", probe, lambda s: s.get("phase") == "RolledBack", 60, log)
            nothing = edgefleet(cp, "rollout", "promote", "adder", "-n", namespace)
            assert nothing.returncode == 1 and "no rollout in progress" in nothing.stderr
            as_json = json.loads(edgefleet(cp, "status", "adder", "-n", namespace, "-o", "json").stdout)
            assert as_json["devices"]["stable"] == 10 and as_json["abortedRevision"] == aborted
        finally:
            fleet.stop()
