"""The deployable files in ``edge_reconciler/`` are valid: the API server accepts them (server-side dry run), the
agent loads the sample and embedded configs, and the DaemonSet keeps running on cut-off edge nodes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgefleet.edge_reconciler import config, main

DEPLOY = Path(__file__).resolve().parents[2] / "edge_reconciler"


def _docs(name: str) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def test_sample_config_loads() -> None:
    cfg = config.load(DEPLOY / "config.sample.yaml", {})
    assert cfg.device_name == "cam-7" and cfg.api.mode == "kubeconfig"
    assert cfg.labels["edgefleet.io/hardware-class"] == "x86-avx2"


def test_daemonset_config_and_scheduling(tmp_path: Path) -> None:
    daemonset, configmap = _docs("daemonset.yaml")
    data = configmap["data"]
    assert isinstance(data, dict)
    (tmp_path / "agent.yaml").write_text(data["agent.yaml"])
    args = main.build_parser().parse_args(["--config", str(tmp_path / "agent.yaml"), "--device-name", "node-1"])
    cfg = main.load_config(args)
    assert (cfg.device_name, cfg.api.mode, cfg.api.url) == ("node-1", "plain", "http://127.0.0.1:10550")
    pod = daemonset["spec"]["template"]["spec"]  # type: ignore[index]
    tolerated = {(t["key"], t.get("effect")) for t in pod["tolerations"] if "tolerationSeconds" not in t}
    assert ("node.kubernetes.io/unreachable", "NoExecute") in tolerated
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/edge": ""}
    assert pod["hostNetwork"] is True
    assert {v["name"]: v.get("hostPath", {}).get("path") for v in pod["volumes"]}["state"] == "/var/lib/edgefleet"


def test_no_namespace_is_hard_coded() -> None:
    for name in ("rbac.yaml", "daemonset.yaml", "kustomization.yaml"):
        for doc in _docs(name):
            assert "namespace" not in (doc.get("metadata") or {}), (name, doc.get("kind"))  # type: ignore[operator]
            assert "namespace" not in doc, name
    assert "namespace:" not in _docs("daemonset.yaml")[1]["data"]["agent.yaml"]  # type: ignore[index]


@pytest.mark.controlplane
def test_api_server_accepts_the_agent_kustomization_in_an_overlay(
    control_plane: object, namespace: str, tmp_path: Path
) -> None:
    # An overlay that names its namespace, as edge_reconciler/kustomization.yaml says to use it.
    import shutil

    shutil.copytree(DEPLOY, tmp_path / "edge_reconciler")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "kustomization.yaml").write_text(
        f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {namespace}\n"
        "resources: [../edge_reconciler]\n"
    )
    rendered = control_plane.kubectl("kustomize", str(tmp_path / "site")).stdout  # type: ignore[attr-defined]
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert {d["metadata"]["namespace"] for d in docs} == {namespace}
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert binding["subjects"][0]["namespace"] == namespace
    result = control_plane.kubectl("apply", "--server-side", "-k", str(tmp_path / "site"))  # type: ignore[attr-defined]
    assert result.stdout.count("serverside-applied") == 5, result.stdout
    ds = control_plane.kubectl("-n", namespace, "get", "ds", "edgefleet-agent", "-o", "json").stdout  # type: ignore[attr-defined]
    assert "POD_NAMESPACE" in ds
    text = (DEPLOY / "rbac-device.yaml").read_text().replace("NAMESPACE", namespace).replace("DEVICE", "cam-7")
    result = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=text)  # type: ignore[attr-defined]
    assert result.stdout.count("created (server dry run)") == 2
