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


@pytest.mark.controlplane
def test_api_server_accepts_the_manifests(control_plane: object, namespace: str) -> None:
    for name in ("rbac.yaml", "daemonset.yaml"):
        text = (DEPLOY / name).read_text().replace("factory-1", namespace)
        result = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=text)  # type: ignore[attr-defined]
        assert "created (server dry run)" in result.stdout
    text = (DEPLOY / "rbac-device.yaml").read_text().replace("NAMESPACE", namespace).replace("DEVICE", "cam-7")
    result = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=text)  # type: ignore[attr-defined]
    assert result.stdout.count("created (server dry run)") == 2
