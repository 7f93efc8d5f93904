"""The real operator process (``kopf run -m edgefleet.operator``) against the real kube-apiserver.

Devices are simulated by :mod:`edgefleet.testing.devices` (they write the status an edge agent would write); the source
models are real ONNX files served over HTTP on 127.0.0.1, compiled by the fp32 packager in the operator's process pool,
signed with a key from a Secret and served by the operator's artifact store.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgefleet.adapters import bundle
from edgefleet.testing import controlplane, models, operatorproc
from edgefleet.testing.adder import DEFAULT_STEPS, events, manifest, md_status, wait_for
from edgefleet.testing.devices import SimulatedFleet
from edgefleet.testing.operatorproc import OperatorProcess

pytestmark = pytest.mark.controlplane
REPO = Path(__file__).resolve().parents[2]
N_DEVICES = 20


onnx_model = models.adder
model_server = models.served
models_support = models


@pytest.fixture
def setup(
    control_plane: controlplane.ControlPlane, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[controlplane.ControlPlane, str, str, Path, OperatorProcess]]:
    models = tmp_path / "models"
    models.mkdir()
    for version, offset in (("1.0.0", 1.0), ("2.0.0", 2.0), ("3.0.0", 3.0)):
        (models / f"{version}.onnx").write_bytes(onnx_model(offset))
    (models / "eval.npz").write_bytes(models_support.evaluation_set(4))
    (models / "linear.onnx").write_bytes(models_support.linear(1))
    (models / "linear-eval.npz").write_bytes(models_support.evaluation_set(16))
    operatorproc.create_signing_secret(control_plane, namespace, bundle.generate_key())
    with model_server(models) as url:
        extra = {k: v.format(namespace=namespace) for k, v in getattr(request, "param", {}).items()}
        env = operatorproc.operator_env(
            control_plane, namespace, tmp_path / "store", controlplane.free_port(), extra=extra
        )
        operator = OperatorProcess(env, namespace, tmp_path / "operator.log")
        operator.start()
        try:
            yield control_plane, namespace, url, tmp_path, operator
        finally:
            operator.stop()


def create_devices(fleet: SimulatedFleet) -> None:
    for i in range(N_DEVICES):
        fleet.create(
            f"dev-{i:02d}",
            {
                "app": "adder",
                "edgefleet.io/site": f"site-{i % 2}",
                "edgefleet.io/line": f"line-{i % 4}",
                "edgefleet.io/hardware-class": "x86",
            },
        )


def test_canary_waves_full_then_failing_canary_rolls_back(
    setup: tuple[controlplane.ControlPlane, str, str, Path, OperatorProcess],
) -> None:
    cp, namespace, url, tmp, _ = setup
    log = tmp / "operator.log"
    models = tmp / "models"
    bad: set[str] = set()
    fleet = SimulatedFleet(cp.kubeconfig, namespace, verdict=lambda _d, r: "Unhealthy" if r in bad else "Healthy")
    create_devices(fleet)
    fleet.start()
    try:
        probe = functools.partial(md_status, cp, namespace)
        cp.kubectl("apply", "-f", "-", input=manifest(namespace, url, "1.0.0", models))
        first = wait_for("1.0.0 installed", probe, lambda s: s.get("phase") == "Healthy", 120, log)
        v1 = first["stableRevision"]
        assert set(fleet.desired().values()) == {v1}
        artifact = first["artifacts"][0]
        with urllib.request.urlopen(artifact["uri"], timeout=10) as resp:  # the operator's store serves it
            data = resp.read()
        key_pem = base64.b64decode(
            json.loads(cp.kubectl("-n", namespace, "get", "secret", "signing", "-o", "json").stdout)["data"][
                "signing-key.pem"
            ]
        )
        opened = bundle.open_bundle(data, [bundle.load_private_key(key_pem).public_key()], artifact["digest"])
        assert opened.manifest["model"]["version"] == "1.0.0" and opened.manifest["golden"]["samples"]
        base = artifact["uri"].split("/artifacts/")[0]
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
            exported = resp.read().decode()
        assert (
            f'edgefleet_rollout_devices{{deployment="adder",namespace="{namespace}",state="updated"}} 20.0' in exported
        )
        assert "edgefleet_compile_duration_seconds_count 1.0" in exported
        assert 'edgefleet_reconcile_duration_seconds_count{result="ok"}' in exported

        # Happy path: 2.0.0 goes canary (2 devices) -> 50 % -> 100 %.
        cp.kubectl("apply", "-f", "-", input=manifest(namespace, url, "2.0.0", models))
        trail: list[tuple[Any, ...]] = []
        done = wait_for(
            "2.0.0 promoted",
            probe,
            lambda s: s.get("phase") == "Healthy" and s.get("stableRevision", "").startswith("2.0.0"),
            180,
            log,
            trail,
        )
        v2 = done["stableRevision"]
        assert set(fleet.desired().values()) == {v2}
        updated_seen = [u for _, step, u in trail if step is not None and u is not None]
        assert 2 in updated_seen, trail  # the 10 % canary was visible in status
        assert any(2 < u < N_DEVICES for u in updated_seen), trail  # a middle wave
        reasons = events(cp, namespace)
        for reason in ("Compiled", "RolloutStarted", "StepCompleted", "Promoted"):
            assert reason in reasons, reasons
        ready = next(c for c in done["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True" and not any(c["type"] == "Reconciling" for c in done["conditions"])

        # Failing canary: 3.0.0 is unhealthy wherever it runs; it is aborted and rolled back automatically.
        bad.add("3.0.0")
        fleet.verdict = lambda _d, r: "Unhealthy" if r.startswith("3.0.0") else "Healthy"
        cp.kubectl("apply", "-f", "-", input=manifest(namespace, url, "3.0.0", models))
        failed = wait_for(
            "3.0.0 rolled back",
            probe,
            lambda s: (
                s.get("phase") == "RolledBack" and not any(c["type"] == "Reconciling" for c in s.get("conditions", []))
            ),
            180,
            log,
        )
        v3 = failed["abortedRevision"]
        assert v3.startswith("3.0.0") and failed["stableRevision"] == v2
        assert set(fleet.desired().values()) == {v2}
        canaries = sorted(d for d, revs in fleet.seen.items() if v3 in revs)
        assert 1 <= len(canaries) <= 2, canaries  # only the 10 % canary ever got the bad version
        ready = next(c for c in failed["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False" and ready["reason"] == "RolledBack"
        assert canaries[0] in ready["message"] and "error rate" in ready["message"]
        assert "RolloutAborted" in events(cp, namespace)
        assert not fleet.errors, fleet.errors[:3]
    finally:
        fleet.stop()


def test_deleting_the_deployment_removes_the_model_from_devices(
    setup: tuple[controlplane.ControlPlane, str, str, Path, OperatorProcess],
) -> None:
    cp, namespace, url, tmp, _ = setup
    fleet = SimulatedFleet(cp.kubeconfig, namespace)
    create_devices(fleet)
    fleet.start()
    try:
        probe = functools.partial(md_status, cp, namespace)
        cp.kubectl("apply", "-f", "-", input=manifest(namespace, url, "1.0.0", tmp / "models"))
        wait_for("installed", probe, lambda s: s.get("phase") == "Healthy", 120, tmp / "operator.log")
        cp.kubectl("-n", namespace, "delete", "md", "adder", "--timeout=60s")
        assert set(fleet.desired().values()) == {None}
    finally:
        fleet.stop()


def cli(cp: controlplane.ControlPlane, namespace: str, *argv: str, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run ``edgefleet status``/``rollout`` in-process; returns the parsed JSON output, or the exit code."""
    from edgefleet.cli import rollout, status

    parser = argparse.ArgumentParser(prog="edgefleet")
    sub = parser.add_subparsers(dest="command")
    status.register(sub)
    rollout.register(sub)
    args = parser.parse_args([*argv, "--kubeconfig", str(cp.kubeconfig), "-n", namespace])
    capsys.readouterr()
    code = args.func(args)
    out = capsys.readouterr().out
    if "--watch" in argv:
        return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return json.loads(out) if "-o" in argv or "--output" in argv else code


def test_cli_pause_resume_promote_abort_and_operator_restart(
    setup: tuple[controlplane.ControlPlane, str, str, Path, OperatorProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    cp, namespace, url, tmp, operator = setup
    log = tmp / "operator.log"
    fleet = SimulatedFleet(cp.kubeconfig, namespace)
    create_devices(fleet)
    fleet.start()
    steps = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
    try:
        probe = functools.partial(md_status, cp, namespace)
        cp.kubectl("apply", "-f", "-", input=manifest(namespace, url, "1.0.0", tmp / "models", steps))
        v1 = wait_for("installed", probe, lambda s: s.get("phase") == "Healthy", 120, log)["stableRevision"]
        cp.kubectl("apply", "-f", "-", input=manifest(namespace, url, "2.0.0", tmp / "models", steps))
        wait_for(
            "first pause",
            probe,
            lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 1,
            120,
            log,
        )
        view = cli(cp, namespace, "rollout", "status", "adder", "-o", "json", capsys=capsys)
        assert [s["state"] for s in view["stepStates"]] == [
            "done",
            "current",
            "pending",
            "pending",
            "pending",
        ]
        assert view["devices"]["updated"] == 2

        # The operator dies mid-rollout and comes back: the rollout continues where it was, not from step 0.
        operator.stop(signal.SIGKILL)
        started = events(cp, namespace).count("RolloutStarted")
        operator.start()
        time.sleep(4)
        resumed = probe()
        assert resumed["currentStepIndex"] == 1 and resumed["phase"] == "Paused"
        assert events(cp, namespace).count("RolloutStarted") == started

        assert cli(cp, namespace, "rollout", "promote", "adder", capsys=capsys) == 0
        wait_for(
            "second pause",
            probe,
            lambda s: s.get("currentStepIndex") == 3 and s.get("phase") == "Paused",
            60,
            log,
        )
        assert sum(r == resumed["canaryRevision"] for r in fleet.desired().values()) == 10

        # Held by annotation: promote refuses (it could not act) and says how to go on.
        assert cli(cp, namespace, "rollout", "pause", "adder", capsys=capsys) == 0
        with pytest.raises(SystemExit, match=r"cannot promote while it is held by annotation edgefleet\.io/paused"):
            cli(cp, namespace, "rollout", "promote", "adder", capsys=capsys)
        held = wait_for(
            "held",
            probe,
            lambda s: any(
                c["type"] == "Ready" and "annotation edgefleet.io/paused" in c.get("message", "")
                for c in s.get("conditions", [])
            ),
            30,
            log,
        )
        assert held["currentStepIndex"] == 3
        assert cli(cp, namespace, "rollout", "resume", "adder", capsys=capsys) == 0
        assert cli(cp, namespace, "rollout", "promote", "adder", capsys=capsys) == 0
        wait_for(
            "2.0.0 promoted after resume",
            probe,
            lambda s: s.get("phase") == "Healthy" and (s.get("stableRevision") or "").startswith("2.0.0"),
            60,
            log,
        )

        # A third version is aborted by hand at its first pause.
        cp.kubectl("apply", "-f", "-", input=manifest(namespace, url, "3.0.0", tmp / "models", steps))
        wait_for(
            "3.0.0 paused",
            probe,
            lambda s: (s.get("canaryRevision") or "").startswith("3.0.0") and s.get("phase") == "Paused",
            120,
            log,
        )
        assert cli(cp, namespace, "rollout", "abort", "adder", capsys=capsys) == 0
        aborted = wait_for("aborted", probe, lambda s: s.get("phase") == "RolledBack", 60, log)
        assert aborted["abortedRevision"].startswith("3.0.0")
        stable = aborted["stableRevision"]
        assert stable.startswith("2.0.0") and stable != v1
        wait_for(
            "devices back on stable",
            lambda: {"d": list(set(fleet.desired().values()))},
            lambda s: s["d"] == [stable],
            30,
            log,
        )
        code, frames = cli(cp, namespace, "rollout", "status", "adder", "--watch", "-o", "json", capsys=capsys)
        assert code == 1 and frames[-1]["phase"] == "RolledBack"  # --watch ends on a rolled-back rollout
        listing = cli(cp, namespace, "status", "-o", "json", capsys=capsys)
        assert [row["name"] for row in listing] == ["adder"] and listing[0]["phase"] == "RolledBack"
        detail = cli(cp, namespace, "status", "adder", "-o", "json", capsys=capsys)
        assert len(detail["deviceRows"]) == N_DEVICES and {r["role"] for r in detail["deviceRows"]} == {"stable"}
    finally:
        fleet.stop()


def test_a_spec_failing_the_accuracy_gate_stalls_and_rolls_nothing_out(
    setup: tuple[controlplane.ControlPlane, str, str, Path, OperatorProcess],
) -> None:
    cp, namespace, url, tmp, _ = setup
    fleet = SimulatedFleet(cp.kubeconfig, namespace)
    create_devices(fleet)
    try:
        probe = functools.partial(md_status, cp, namespace)
        # The optimising compiler must use INT8 with zero relative error on a model where INT8 measurably differs.
        body = json.loads(manifest(namespace, url, "1.0.0", tmp / "models"))
        linear = (tmp / "models" / "linear.onnx").read_bytes()
        body["spec"]["model"].update(uri=f"{url}/linear.onnx", sha256=hashlib.sha256(linear).hexdigest())
        body["spec"]["compile"]["targets"][0].update(
            precision="int8",
            accuracyBudget={"maxRelativeError": 0.0},
            evaluation={
                "uri": f"{url}/linear-eval.npz",
                "sha256": hashlib.sha256((tmp / "models" / "linear-eval.npz").read_bytes()).hexdigest(),
            },
        )
        cp.kubectl("apply", "-f", "-", input=json.dumps(body))
        stalled = wait_for("Stalled", probe, lambda s: s.get("phase") == "Stalled", 120, tmp / "operator.log")
        by_type = {c["type"]: c for c in stalled["conditions"]}
        assert by_type["Stalled"]["reason"] == "AccuracyGateFailed"
        message = by_type["Stalled"]["message"]
        assert "cannot meet the accuracy budget" in message and "relative error 0.0" in message, message
        assert by_type["Ready"]["status"] == "False" and "Reconciling" not in by_type
        assert by_type["Stalled"]["observedGeneration"] == 1
        time.sleep(3)  # several resyncs: the verdict stands and nothing is recompiled or rolled out
        assert set(fleet.desired().values()) == {None}
        assert probe()["conditions"] == stalled["conditions"]
        assert "AccuracyGateFailed" in events(cp, namespace)
    finally:
        fleet.stop()


def test_deployables_validate_and_the_operator_works_with_only_its_rbac(
    control_plane: controlplane.ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    rendered = cp.kubectl("kustomize", str(REPO / "operator")).stdout
    cp.kubectl("apply", "--server-side", "-f", str(REPO / "operator" / "namespace.yaml"))
    cp.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=rendered)
    wanted = ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    docs = [d for d in rendered.split("\n---\n") if any(f"kind: {k}\n" in d for k in wanted)]
    cp.kubectl("apply", "--server-side", "-f", "-", input="\n---\n".join(docs))
    key = bundle.generate_key()
    cp.kubectl("-n", "edgefleet-system", "delete", "secret", "edgefleet-signing-key", "--ignore-not-found")
    cp.kubectl(
        "-n",
        "edgefleet-system",
        "create",
        "secret",
        "generic",
        "edgefleet-signing-key",
        f"--from-literal=signing-key.pem={bundle.private_key_pem(key).decode()}",
    )
    token = cp.kubectl("-n", "edgefleet-system", "create", "token", "edgefleet-operator").stdout.strip()
    assert cp.ca_file is not None
    kubeconfig = tmp_path / "operator-kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": cp.server,
                            "certificate-authority-data": base64.b64encode(cp.ca_file.read_bytes()).decode(),
                        },
                    }
                ],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "sa"}}],
                "current-context": "c",
            }
        )
    )
    # The operator's identity cannot read other Secrets or write device status.
    denied = cp.kubectl("--kubeconfig", str(kubeconfig), "-n", namespace, "get", "secrets", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    models = tmp_path / "models"
    models.mkdir()
    (models / "1.0.0.onnx").write_bytes(onnx_model(1.0))
    (models / "eval.npz").write_bytes(models_support.evaluation_set(4))
    with model_server(models) as url:
        port = controlplane.free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
            "EDGEFLEET_STORE_DIR": str(tmp_path / "store"),
            "EDGEFLEET_STORE_PORT": str(port),
            "EDGEFLEET_STORE_HOST": "127.0.0.1",
            "EDGEFLEET_STORE_URL": f"http://127.0.0.1:{port}",
            "EDGEFLEET_RESYNC_SECONDS": "1",
        }
        operator = OperatorProcess(env, namespace, tmp_path / "operator.log")
        operator.start()
        fleet = SimulatedFleet(cp.kubeconfig, namespace)
        create_devices(fleet)
        fleet.start()
        try:
            cp.kubectl("apply", "-f", "-", input=manifest(namespace, url, "1.0.0", models))
            done = wait_for(
                "Healthy under least privilege",
                functools.partial(md_status, cp, namespace),
                lambda s: s.get("phase") == "Healthy",
                120,
                tmp_path / "operator.log",
            )
            assert set(fleet.desired().values()) == {done["stableRevision"]}
            assert "Compiled" in events(cp, namespace)
        finally:
            fleet.stop()
            operator.stop()


@pytest.mark.parametrize("setup", [{"EDGEFLEET_SIGNING_SECRET": "{namespace}/created-later"}], indirect=True)
def test_a_missing_signing_key_is_reported_and_the_rollout_starts_once_it_exists(
    setup: tuple[controlplane.ControlPlane, str, str, Path, OperatorProcess],
) -> None:
    cp, namespace, url, tmp, _ = setup
    log = tmp / "operator.log"
    fleet = SimulatedFleet(cp.kubeconfig, namespace)
    create_devices(fleet)
    fleet.start()
    try:
        probe = functools.partial(md_status, cp, namespace)
        cp.kubectl("apply", "-f", "-", input=manifest(namespace, url, "1.0.0", tmp / "models"))
        waiting = wait_for(
            "the missing key reported",
            probe,
            lambda s: any(
                c["type"] == "Reconciling" and "created-later" in c.get("message", "") for c in s.get("conditions", [])
            ),
            60,
            log,
        )
        message = next(c["message"] for c in waiting["conditions"] if c["type"] == "Reconciling")
        assert f"kubectl -n {namespace} create secret generic created-later" in message
        assert set(fleet.desired().values()) == {None}
        key = bundle.generate_key()
        cp.kubectl(
            "-n",
            namespace,
            "create",
            "secret",
            "generic",
            "created-later",
            f"--from-literal=signing-key.pem={bundle.private_key_pem(key).decode()}",
        )
        done = wait_for("Healthy once the key exists", probe, lambda s: s.get("phase") == "Healthy", 120, log)
        assert set(fleet.desired().values()) == {done["stableRevision"]}
    finally:
        fleet.stop()


@pytest.mark.chaos
@pytest.mark.slow
def test_the_rollout_survives_an_api_server_restart(
    setup: tuple[controlplane.ControlPlane, str, str, Path, OperatorProcess],
) -> None:
    cp, namespace, url, tmp, operator = setup
    log = tmp / "operator.log"
    fleet = SimulatedFleet(cp.kubeconfig, namespace)
    create_devices(fleet)
    fleet.start()
    steps = [{"setWeight": 10}, {"pause": {"durationSeconds": 3}}, {"setWeight": 100}]
    try:
        probe = functools.partial(md_status, cp, namespace)
        cp.kubectl("apply", "-f", "-", input=manifest(namespace, url, "1.0.0", tmp / "models", steps))
        wait_for("installed", probe, lambda s: s.get("phase") == "Healthy", 120, log)
        cp.kubectl("apply", "-f", "-", input=manifest(namespace, url, "2.0.0", tmp / "models", steps))
        wait_for("canary", probe, lambda s: (s.get("canaryRevision") or "").startswith("2.0.0"), 60, log)
        cp.restart_apiserver()  # the operator's watches and calls fail for a while; it must carry on
        done = wait_for(
            "2.0.0 promoted after the restart",
            probe,
            lambda s: s.get("phase") == "Healthy" and (s.get("stableRevision") or "").startswith("2.0.0"),
            180,
            log,
        )
        assert set(fleet.desired().values()) == {done["stableRevision"]}
        assert operator.proc is not None and operator.proc.poll() is None, "the operator process kept running"
        assert events(cp, namespace).count("Promoted") == 1
    finally:
        fleet.stop()


@pytest.mark.parametrize("setup", [{"EDGEFLEET_RESYNC_SECONDS": "3600"}], indirect=True)
def test_device_reports_drive_the_rollout_without_the_resync_timer(
    setup: tuple[controlplane.ControlPlane, str, str, Path, OperatorProcess],
) -> None:
    """With the periodic resync an hour away, only the EdgeDevice watch (and the planner's own requeues, e.g. the end
    of an analysis window or a pause) can move a rollout on: canary -> analysis -> 50 % -> 100 % must still finish."""
    cp, namespace, url, tmp, _ = setup
    log = tmp / "operator.log"
    models = tmp / "models"
    fleet = SimulatedFleet(cp.kubeconfig, namespace)
    create_devices(fleet)
    fleet.start()
    try:
        probe = functools.partial(md_status, cp, namespace)
        cp.kubectl("apply", "-f", "-", input=manifest(namespace, url, "1.0.0", models))
        wait_for("1.0.0 installed", probe, lambda s: s.get("phase") == "Healthy", 120, log)
        steps = [{"setWeight": 10}, {"pause": {"durationSeconds": 2}}, *DEFAULT_STEPS[1:]]
        cp.kubectl("apply", "-f", "-", input=manifest(namespace, url, "2.0.0", models, steps))
        began = time.monotonic()
        done = wait_for(
            "2.0.0 promoted by device events alone",
            probe,
            lambda s: s.get("phase") == "Healthy" and s.get("stableRevision", "").startswith("2.0.0"),
            90,
            log,
        )
        assert set(fleet.desired().values()) == {done["stableRevision"]}
        assert time.monotonic() - began < 90
        reasons = events(cp, namespace)
        for reason in ("RolloutStarted", "StepCompleted", "Promoted"):
            assert reason in reasons, reasons
    finally:
        fleet.stop()
