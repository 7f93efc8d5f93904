"""The Helm chart (charts/edgefleet) with the real ``helm`` (built from helm.sh/helm/v3 by hack/build-go-tool.sh):
``helm lint``, ``helm template | kubectl apply --server-side --dry-run=server`` and ``helm install`` into the real
test API server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from edgefleet.testing import controlplane, gotools

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "edgefleet"


def helm(tmp: Path, *args: str, kubeconfig: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(tmp / "helm-cache"),
        "HELM_CONFIG_HOME": str(tmp / "helm-config"),
        "HELM_DATA_HOME": str(tmp / "helm-data"),
    }
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    result = subprocess.run([str(gotools.binary("helm")), *args], capture_output=True, text=True, env=env, check=False)
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def test_helm_lint_passes_strict(tmp_path: Path) -> None:
    out = helm(tmp_path, "lint", "--strict", str(CHART)).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_chart_crds_are_the_generated_ones() -> None:
    for crd in (REPO / "crds").glob("*.yaml"):
        assert (CHART / "crds" / crd.name).read_text() == crd.read_text(), f"run make crds ({crd.name})"


def test_template_renders_operator_agent_and_aggregate_roles(tmp_path: Path) -> None:
    out = helm(tmp_path, "template", "fleet", str(CHART), "--namespace", "plant-north").stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert "Deployment/fleet-edgefleet-operator" in kinds and "DaemonSet/fleet-edgefleet-agent" in kinds
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    view, edit = roles["fleet-edgefleet-view"], roles["fleet-edgefleet-edit"]
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert "aggregate-to-view" not in edit["metadata"]["labels"]
    namespaced = [d for d in docs if d["kind"] not in ("ClusterRole", "ClusterRoleBinding")]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"plant-north"}
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    assert "$(POD_NAMESPACE)" in ds["spec"]["template"]["spec"]["containers"][0]["args"]
    watched = helm(tmp_path, "template", "fleet", str(CHART), "--set", "operator.watchNamespaces={a,b}").stdout
    assert "--namespace=a" in watched and "--all-namespaces" not in watched


@pytest.mark.controlplane
def test_template_applies_server_side_and_installs(
    control_plane: controlplane.ControlPlane, namespace: str, tmp_path: Path
) -> None:
    rendered = helm(tmp_path, "template", "dry", str(CHART), "--namespace", namespace, "--include-crds").stdout
    result = control_plane.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager=helm-dry-run",
        "--force-conflicts",
        "-f",
        "-",
        input=rendered,
    )
    applied = [line for line in result.stdout.splitlines() if "serverside-applied (server dry run)" in line]
    assert len(applied) == len([d for d in yaml.safe_load_all(rendered) if d]), result.stdout

    install = helm(
        tmp_path,
        "install",
        "fleet",
        str(CHART),
        "--namespace",
        namespace,
        "--set",
        "agent.labels.edgefleet\\.io/site=plant-a",
        kubeconfig=control_plane.kubeconfig,
    )
    assert "STATUS: deployed" in install.stdout, install.stdout
    status = json.loads(
        helm(tmp_path, "status", "fleet", "-n", namespace, "-o", "json", kubeconfig=control_plane.kubeconfig).stdout
    )
    assert status["info"]["status"] == "deployed"
    deploy = json.loads(
        control_plane.kubectl("-n", namespace, "get", "deploy", "fleet-edgefleet-operator", "-o", "json").stdout
    )
    env = {e["name"]: e.get("value") for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["EDGEFLEET_SIGNING_SECRET"] == f"{namespace}/edgefleet-signing-key"
    control_plane.kubectl("-n", namespace, "get", "ds", "fleet-edgefleet-agent")
    labels = json.loads(control_plane.kubectl("get", "clusterrole", "fleet-edgefleet-view", "-o", "json").stdout)[
        "metadata"
    ]["labels"]
    assert labels["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    # The edit role lets a bound user steer a rollout (patch a ModelDeployment) and nothing cluster-wide.
    control_plane.kubectl(
        "-n", namespace, "create", "rolebinding", "alice-edit", "--clusterrole=fleet-edgefleet-edit", "--user=alice"
    )
    can = control_plane.kubectl(
        "-n", namespace, "auth", "can-i", "patch", "modeldeployments.edgefleet.io", "--as=alice", check=False
    )
    assert can.stdout.strip() == "yes"
    cannot = control_plane.kubectl(
        "auth", "can-i", "patch", "modeldeployments.edgefleet.io", "-A", "--as=alice", check=False
    )
    assert cannot.stdout.strip() == "no"
    helm(tmp_path, "uninstall", "fleet", "-n", namespace, kubeconfig=control_plane.kubeconfig)
    gone = control_plane.kubectl("-n", namespace, "get", "deploy", "fleet-edgefleet-operator", check=False)
    assert gone.returncode != 0
    # CRDs stay (Helm never deletes what it installed from crds/).
    control_plane.kubectl("get", "crd", "modeldeployments.edgefleet.io")
