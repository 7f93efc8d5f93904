"""The CRDs behave as first-class resources on a real kube-apiserver: apply, validation, columns, status, explain."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edgefleet.testing.controlplane import ControlPlane

pytestmark = pytest.mark.controlplane

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "fixtures" / "bad-manifests"


def apiserver_expectation(path: Path) -> str | None:
    for line in path.read_text().splitlines()[:3]:
        if line.startswith("# apiserver: "):
            return line.removeprefix("# apiserver: ")
    return None


REJECTED = [p for p in sorted(BAD.glob("*.yaml")) if apiserver_expectation(p)]


def test_crds_install_server_side_with_names_and_categories(control_plane: ControlPlane) -> None:
    result = control_plane.kubectl(
        "apply", "--server-side", "--field-manager=edgefleet-tests", "-f", str(ROOT / "crds")
    )
    assert "serverside-applied" in result.stdout
    crds = json.loads(
        control_plane.kubectl("get", "crd", "-l", "app.kubernetes.io/part-of=edgefleet", "-o", "json").stdout
    )
    names = {c["spec"]["names"]["kind"]: c for c in crds["items"]}
    assert set(names) == {"ModelDeployment", "EdgeDevice"}
    assert names["ModelDeployment"]["spec"]["names"]["shortNames"] == ["md"]
    assert names["EdgeDevice"]["spec"]["names"]["shortNames"] == ["ed"]
    for crd in crds["items"]:
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions.get("NonStructuralSchema", "False") == "False"


def test_every_example_applies_with_kustomize(control_plane: ControlPlane) -> None:
    result = control_plane.kubectl("apply", "-k", str(ROOT / "examples" / "fleet-manifests"))
    assert (
        "modeldeployment.edgefleet.io/weld-defect-classifier created" in result.stdout or "unchanged" in result.stdout
    )
    mds = json.loads(control_plane.kubectl("get", "md", "-A", "-o", "json").stdout)["items"]
    mds = [m for m in mds if m["metadata"]["namespace"].startswith("plant-")]
    assert sorted((m["metadata"]["namespace"], m["metadata"]["name"]) for m in mds) == [
        ("plant-north", "vibration-anomaly"),
        ("plant-north", "weld-defect-classifier"),
        ("plant-south", "vibration-anomaly"),
        ("plant-south", "weld-defect-classifier"),
    ]
    south = next(
        m for m in mds if m["metadata"]["namespace"] == "plant-south" and m["metadata"]["name"].startswith("weld")
    )
    assert south["spec"]["rollout"]["maxUnavailable"] == 1  # the overlay's patch
    assert south["spec"]["rollout"]["successThreshold"] == 0.9
    north = next(
        m for m in mds if m["metadata"]["namespace"] == "plant-north" and m["metadata"]["name"].startswith("vib")
    )
    assert north["spec"]["rollout"]["successThreshold"] == 0.8  # defaulted by the API server's schema
    devices = json.loads(control_plane.kubectl("get", "ed", "-A", "-o", "json").stdout)["items"]
    plants = [d for d in devices if d["metadata"]["namespace"] in ("plant-north", "plant-south")]
    assert len(plants) == 30


def test_at_least_ten_distinct_invalid_resources_are_rejected() -> None:
    assert len(REJECTED) >= 10


@pytest.mark.parametrize("path", REJECTED, ids=lambda p: p.stem)
def test_api_server_rejects_invalid_resource(control_plane: ControlPlane, namespace: str, path: Path) -> None:
    result = control_plane.kubectl("apply", "--server-side", "-n", namespace, "-f", str(path), check=False)
    assert result.returncode != 0, f"{path.name} was accepted:\n{result.stdout}"
    expected = apiserver_expectation(path)
    assert expected is not None and expected in result.stderr, f"expected {expected!r} in:\n{result.stderr}"
    listed = control_plane.kubectl("get", "md,ed", "-n", namespace, "-o", "name").stdout
    assert listed.strip() == "", "nothing may be half-applied"


def _example(name: str) -> str:
    return (ROOT / "examples" / "fleet-manifests" / "base" / name).read_text()


def test_printer_columns_and_status_subresource(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=_example("weld-defect-classifier.yaml"))
    before = json.loads(
        control_plane.kubectl("get", "md", "weld-defect-classifier", "-n", namespace, "-o", "json").stdout
    )
    status = {
        "status": {
            "observedGeneration": before["metadata"]["generation"],
            "phase": "Progressing",
            "currentStepIndex": 2,
            "currentStep": 3,
            "stableRevision": "1.2.0-0a1b2c3d4e",
            "canaryRevision": "1.3.0-5f6a7b8c9d",
            "devices": {"targeted": 20, "updated": 10, "healthy": 9, "failed": 1, "stable": 10},
            "reachability": {"reachable": 18, "unreachable": 2},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "Progressing",
                    "message": "step 3/5: 10 of 20 devices updated",
                    "lastTransitionTime": "2026-11-27T10:00:00Z",
                    "observedGeneration": before["metadata"]["generation"],
                }
            ],
        }
    }
    control_plane.kubectl(
        "patch",
        "md",
        "weld-defect-classifier",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    after = json.loads(
        control_plane.kubectl("get", "md", "weld-defect-classifier", "-n", namespace, "-o", "json").stdout
    )
    assert after["metadata"]["generation"] == before["metadata"]["generation"], "status writes must not bump generation"
    assert after["status"]["devices"]["healthy"] == 9
    table = control_plane.kubectl("get", "md", "-n", namespace).stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "MODEL",
        "VERSION",
        "READY",
        "PHASE",
        "STEP",
        "TARGETED",
        "UPDATED",
        "HEALTHY",
        "UNREACHABLE",
        "STABLE",
        "CANARY",
        "AGE",
    ]
    assert table[1].split()[:12] == [
        "weld-defect-classifier",
        "weld-defect",
        "1.3.0",
        "False",
        "Progressing",
        "3",  # 1-based, as the condition says "step 3/5"
        "20",
        "10",
        "9",
        "2",
        "1.2.0-0a1b2c3d4e",
        "1.3.0-5f6a7b8c9d",
    ]
    wide = control_plane.kubectl("get", "md", "-n", namespace, "-o", "wide").stdout
    assert "step 3/5: 10 of 20 devices updated" in wide
    # A status field sent through the main resource is ignored (the subresource owns it).
    control_plane.kubectl(
        "patch",
        "md",
        "weld-defect-classifier",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"status":{"phase":"Healthy"}}',
    )
    phase = control_plane.kubectl(
        "get", "md", "weld-defect-classifier", "-n", namespace, "-o", "jsonpath={.status.phase}"
    ).stdout
    assert phase == "Progressing"


def test_status_with_invalid_condition_is_rejected(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=_example("vibration-anomaly.yaml"))
    bad = {
        "status": {"conditions": [{"type": "Ready", "status": "Maybe", "reason": "x y", "lastTransitionTime": "now"}]}
    }
    result = control_plane.kubectl(
        "patch",
        "md",
        "vibration-anomaly",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(bad),
        check=False,
    )
    assert result.returncode != 0
    assert 'Unsupported value: "Maybe"' in result.stderr


def test_edge_device_columns_and_category(control_plane: ControlPlane, namespace: str) -> None:
    device = """apiVersion: edgefleet.io/v1alpha1
kind: EdgeDevice
metadata:
  name: north-1-01
  labels:
    edgefleet.io/site: plant-north
    edgefleet.io/line: line-1
    edgefleet.io/hardware-class: x86-avx2
"""
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=device)
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=_example("vibration-anomaly.yaml"))
    table = control_plane.kubectl("get", "ed", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "SITE", "LINE", "HARDWARE", "READY", "REASON", "MODELS", "AGE"]
    assert table[1].split()[:4] == ["north-1-01", "plant-north", "line-1", "x86-avx2"]
    names = control_plane.kubectl("get", "edgefleet", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(names) == [
        "edgedevice.edgefleet.io/north-1-01",
        "modeldeployment.edgefleet.io/vibration-anomaly",
    ]


def test_kubectl_explain_documents_fields(control_plane: ControlPlane) -> None:
    assert "Share of updated devices that must report healthy." in _explain(
        control_plane, "md.spec.rollout.successThreshold"
    )
    assert "Install state." in _explain(control_plane, "ed.status.models.state")


def _explain(control_plane: ControlPlane, field: str) -> str:
    for _ in range(20):  # right after the CRDs are (re)applied, the OpenAPI document may lag for a moment
        result = control_plane.kubectl("explain", field, check=False)
        if result.returncode == 0:
            return " ".join(result.stdout.split())  # kubectl wraps descriptions at its terminal width
        time.sleep(0.5)
    raise AssertionError(f"kubectl explain {field}: {result.stderr}")


def test_kubectl_explain_shows_defaults(control_plane: ControlPlane) -> None:
    assert "Default: 25%." in _explain(control_plane, "md.spec.rollout.maxUnavailable")
    assert "Default: 0.8." in _explain(control_plane, "md.spec.rollout.successThreshold")
    assert "Default: auto." in _explain(control_plane, "md.spec.compile.targets.precision")


def test_client_side_then_server_side_apply_of_the_examples_merges(control_plane: ControlPlane) -> None:
    """The examples README's sequence: `kubectl apply -k` once, later `kubectl apply --server-side -k`."""
    fleet = str(ROOT / "examples" / "fleet-manifests")
    control_plane.kubectl("apply", "-k", fleet)
    result = control_plane.kubectl("apply", "--server-side", "-k", fleet, check=False)
    assert result.returncode == 0 and "conflict" not in result.stderr.lower(), result.stderr
    # A second manager may own one compile target without taking the list: entries merge by name.
    md = json.loads(
        control_plane.kubectl("-n", "plant-north", "get", "md", "weld-defect-classifier", "-o", "json").stdout
    )
    patch = {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "weld-defect-classifier", "namespace": "plant-north"},
        "spec": {"compile": {"targets": [{**md["spec"]["compile"]["targets"][1], "precision": "fp16"}]}},
    }
    patch["spec"]["compile"]["targets"][0].pop("quantization", None)
    control_plane.kubectl(
        "apply", "--server-side", "--field-manager=arm-team", "--force-conflicts", "-f", "-", input=json.dumps(patch)
    )
    after = json.loads(
        control_plane.kubectl(
            "-n", "plant-north", "get", "md", "weld-defect-classifier", "-o", "json", "--show-managed-fields"
        ).stdout
    )
    targets = {t["name"]: t for t in after["spec"]["compile"]["targets"]}
    assert sorted(targets) == ["arm64-a72", "x86-avx2"] and targets["arm64-a72"]["precision"] == "fp16"
    managers = {m["manager"] for m in after["metadata"]["managedFields"]}
    assert "arm-team" in managers
