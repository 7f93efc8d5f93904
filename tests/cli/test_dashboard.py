"""``edgefleet dashboard`` as a user runs it: refused binds, a clear error without a cluster, and the real command on
the real API server (serves, answers, stops on SIGTERM)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from edgefleet.cli import main as cli
from edgefleet.testing import controlplane


@pytest.mark.parametrize("address", ["0.0.0.0", "192.0.2.10", "dashboard.example"])
def test_a_non_loopback_address_needs_expose(address: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["dashboard", "--address", address]) == 2
    err = capsys.readouterr().err
    assert f"--address {address} is not a loopback address" in err and "--expose" in err


def test_namespace_and_all_namespaces_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["dashboard", "-n", "a", "-A"]) == 2
    assert "not both" in capsys.readouterr().err


def test_a_missing_kubeconfig_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["dashboard", "--kubeconfig", str(tmp_path / "nope.yaml")]) == 1
    assert "nope.yaml: cannot read the kubeconfig" in capsys.readouterr().err


@pytest.mark.controlplane
def test_the_command_serves_the_namespace_and_stops_on_sigterm(
    control_plane: controlplane.ControlPlane, namespace: str
) -> None:
    path = os.pathsep.join([str(controlplane.REPO / "src"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    args = ["dashboard", "--kubeconfig", str(control_plane.kubeconfig), "-n", namespace, "--port", "0"]
    with subprocess.Popen(
        [sys.executable, "-m", "edgefleet.cli.main", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = re.search(r"on (http://127\.0\.0\.1:\d+/) \(namespace (\S+), 0 devices, read-only", line)
            assert match and match.group(2) == namespace, line
            with urllib.request.urlopen(match.group(1) + "api/snapshot", timeout=10) as response:
                snap = json.load(response)
            assert snap["fleet"]["total"] == 0 and snap["meta"]["namespaces"] == [namespace]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
