"""The real operator with its OCI registry backend, real ``edgefleet-agent`` processes and the real registry.

The second version's source model is an OCI artifact too (``spec.model.uri: oci://...@sha256:...``, pushed by oras),
and it is downloaded ahead of activation (``rollout.prestage``) while a pause holds the switch.

The operator signs each bundle and pushes it as an OCI artifact (credentials from a ``kubernetes.io/dockerconfigjson``
Secret, TLS with the test CA); ``EdgeDevice.spec`` names it by digest; the agents pull it (one through a mirror that
is down) and verify it; ``oras`` pulls the same artifact and it re-packs into the signed bundle. The registry
password appears in no log, event or status.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgefleet.adapters import bundle
from edgefleet.testing import controlplane, models, operatorproc, oras, registry
from edgefleet.testing.adder import agent_config, manifest, md_status, wait_for
from edgefleet.testing.operatorproc import OperatorProcess

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
HEALTH = {"latencyP95Ms": 500.0, "maxErrorRate": 0.05, "minSamples": 1, "windowSeconds": 2}
STEPS = [{"setWeight": 50}, {"setWeight": 100}]


@pytest.fixture
def registry_fleet(
    control_plane: controlplane.ControlPlane,
    namespace: str,
    tmp_path: Path,
    origin: registry.Registry,
    tls: registry.Certificates,
) -> Iterator[tuple[str, Path, list[Path]]]:
    cp = control_plane
    store_dir = tmp_path / "models"
    store_dir.mkdir()
    for version, offset in (("1.0.0", 1.0), ("2.0.0", 2.0)):
        (store_dir / f"{version}.onnx").write_bytes(models.adder(offset))
    (store_dir / "eval.npz").write_bytes(models.evaluation_set(4))
    key = bundle.generate_key()
    (tmp_path / "trust.pem").write_bytes(bundle.public_key_pem(key.public_key()))
    operatorproc.create_signing_secret(cp, namespace, key)
    user, password = registry.TEST_CREDENTIALS
    cp.kubectl(
        "-n", namespace, "create", "secret", "docker-registry", "registry",
        f"--docker-server={origin.host}", f"--docker-username={user}", f"--docker-password={password}",
    )  # fmt: skip
    auth = tmp_path / "registry-auth.json"
    auth.write_text(json.dumps(origin.docker_config()))
    down = f"https://127.0.0.1:{controlplane.free_port()}"
    pythonpath = os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")])
    agents: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / "operator.log"]
    with models.served(store_dir) as url:
        extra = {
            "EDGEFLEET_ARTIFACT_BACKEND": "oci",
            "EDGEFLEET_OCI_REPOSITORY": f"{origin.host}/e2e-{registry.stamp()}",
            "EDGEFLEET_OCI_SECRET": f"{namespace}/registry",
            "EDGEFLEET_OCI_CA_FILE": str(tls.ca_file),
            "EDGEFLEET_REGISTRY_CONFIG": str(auth),  # source models from oci:// (the compiler's pulls)
        }
        env = operatorproc.operator_env(cp, namespace, tmp_path / "store", controlplane.free_port(), extra=extra)
        operator = OperatorProcess(env, namespace, logs[0])
        operator.start()
        try:
            for i in range(2):
                name = f"agent-{i}"
                path = agent_config(tmp_path, name, namespace, cp.kubeconfig, line=i)
                doc = yaml.safe_load(path.read_text())
                doc["artifacts"] = {"caFile": str(tls.ca_file), "credentialsFile": str(auth)}
                if i == 0:
                    doc["artifacts"]["mirrors"] = [{"url": down}]  # a site cache that is down
                path.write_text(yaml.safe_dump(doc))
                logs.append(tmp_path / f"{name}.log")
                with logs[-1].open("ab") as log:
                    agents.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "edgefleet.edge_reconciler.main", "--config", str(path)],
                            env={**os.environ, "PYTHONPATH": pythonpath},
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            yield url, tmp_path, logs
        finally:
            controlplane.stop_all(agents, grace=5)
            operator.stop()


def _spec(namespace: str, url: str, version: str, root: Path, source: str | None = None) -> str:
    body = json.loads(manifest(namespace, url, version, root / "models", STEPS))
    body["spec"]["health"] = HEALTH
    if source is not None:
        body["spec"]["model"]["uri"] = source
        # Download ahead, one device of the site at a time, while a pause holds activation.
        body["spec"]["rollout"]["steps"] = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
        body["spec"]["rollout"]["prestage"] = {"maxConcurrentPerSite": 1}
    return json.dumps(body)


def _devices(cp: controlplane.ControlPlane, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(cp.kubectl("-n", namespace, "get", "ed", "-o", "json").stdout)["items"]
    return items


def test_operator_pushes_to_the_registry_and_agents_pull_by_digest(
    control_plane: controlplane.ControlPlane,
    namespace: str,
    origin: registry.Registry,
    registry_fleet: tuple[str, Path, list[Path]],
) -> None:
    cp = control_plane
    url, tmp, logs = registry_fleet
    wait_for("agents registered", lambda: {"n": len(_devices(cp, namespace))}, lambda s: s["n"] == 2, 90, logs[0])
    probe = lambda: md_status(cp, namespace)  # noqa: E731
    # 2.0.0's source model is itself an OCI artifact (pushed by oras), pinned by digest: spec.model.uri oci://...
    pushed = oras.run(
        origin, "push", f"{origin.host}/sources/adder:2.0.0", "2.0.0.onnx", "--format", "json", cwd=tmp / "models"
    )
    source = f"oci://{origin.host}/sources/adder@{json.loads(pushed.stdout)['digest']}"
    cp.kubectl("apply", "-f", "-", input=_spec(namespace, url, "1.0.0", tmp))
    wait_for("1.0.0 on both agents", probe, lambda s: s.get("phase") == "Healthy", 180, logs[0])
    cp.kubectl("apply", "-f", "-", input=_spec(namespace, url, "2.0.0", tmp, source))
    paused = wait_for(
        "2.0.0 staged on both agents",
        probe,
        lambda s: s.get("phase") == "Paused" and (s.get("devices") or {}).get("staged") == 2,
        180,
        logs[0],
    )
    staged = paused["artifacts"][0]["digest"]
    for device in _devices(cp, namespace):
        (model,) = device["status"]["models"]
        assert model["stagedDigest"] == staged and model["activeVersion"] == "1.0.0", model
    cp.kubectl("-n", namespace, "annotate", "md", "adder", f"edgefleet.io/promote={paused['canaryRevision']}/1")
    status = wait_for(
        "2.0.0 on both agents",
        probe,
        lambda s: s.get("phase") == "Healthy" and str(s.get("stableRevision", "")).startswith("2.0.0"),
        180,
        logs[0],
    )
    (artifact,) = status["artifacts"]
    assert artifact["uri"].startswith(f"oci://{origin.host}/") and "@sha256:" in artifact["uri"]
    devices = _devices(cp, namespace)
    for device in devices:
        (entry,) = device["spec"]["models"]
        assert entry["artifact"]["uri"] == artifact["uri"] and entry["artifact"]["digest"] == artifact["digest"]
        (model,) = device["status"]["models"]
        assert model["state"] == "Active" and model["activeDigest"] == artifact["digest"]
        assert "stagedDigest" not in model
        assert model["download"]["source"] == origin.url
    with_mirror = next(d for d in devices if d["metadata"]["name"] == "agent-0")
    (failure,) = with_mirror["status"]["models"][0]["download"]["failures"]
    assert failure.startswith("https://127.0.0.1:") and "TransientError" in failure

    # The same artifact, pulled by oras, re-packs into the bundle the devices verified.
    out = tmp / "pulled"
    out.mkdir()
    oras.run(origin, "pull", artifact["uri"].removeprefix("oci://"), "-o", str(out), cwd=tmp)
    repacked = bundle.pack({p.name: p.read_bytes() for p in out.iterdir()})
    assert bundle.sha256_digest(repacked) == artifact["digest"]
    trust = bundle.load_public_key((tmp / "trust.pem").read_bytes())
    assert bundle.open_bundle(repacked, [trust], artifact["digest"]).manifest["model"]["version"] == "2.0.0"

    # Credentials never leave the Secret and the agents' credentials file.
    user, password = registry.TEST_CREDENTIALS
    secrets = [password, base64.b64encode(f"{user}:{password}".encode()).decode()]
    events = cp.kubectl("-n", namespace, "get", "events", "-o", "json").stdout
    md = cp.kubectl("-n", namespace, "get", "md", "adder", "-o", "json").stdout
    texts = {"events": events, "modeldeployment": md, "edgedevices": json.dumps(devices)}
    texts |= {log.name: log.read_text(errors="replace") for log in logs}
    assert "Configured registry artifact store" in texts["operator.log"]
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, where
