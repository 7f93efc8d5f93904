"""The ``adder`` ModelDeployment that the control-plane tests, the chaos suite and the fleet benchmark roll out.

Its model is :func:`edgefleet.testing.models.adder` (y = x + offset) served from a local directory; this module writes
its manifest and an agent config for its devices, and reads its rollout back (status, events, waiting for a state).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from edgefleet.testing import controlplane

DEFAULT_STEPS: list[dict[str, Any]] = [
    {"setWeight": 10},
    {"analysis": {"durationSeconds": 2, "minSamples": 100}},
    {"setWeight": 50},
    {"setWeight": 100},
]


def manifest(namespace: str, url: str, version: str, models: Path, steps: list[dict[str, Any]] | None = None) -> str:
    sha = hashlib.sha256((models / f"{version}.onnx").read_bytes()).hexdigest()
    body = {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "adder", "namespace": namespace},
        "spec": {
            "model": {
                "name": "adder",
                "version": version,
                "uri": f"{url}/{version}.onnx",
                "sha256": sha,
                "task": "regression",
            },
            "compile": {
                "targets": [
                    {
                        "name": "x86",
                        "evaluation": {
                            "uri": f"{url}/eval.npz",
                            "sha256": hashlib.sha256((models / "eval.npz").read_bytes()).hexdigest(),
                        },
                    }
                ]
            },
            "selector": {"matchLabels": {"app": "adder"}},
            "rollout": {
                "steps": steps or DEFAULT_STEPS,
                "maxUnavailable": "50%",
                "progressDeadlineSeconds": 120,
            },
        },
    }
    return json.dumps(body)


def md_status(cp: controlplane.ControlPlane, namespace: str) -> dict[str, Any]:
    out = cp.kubectl("-n", namespace, "get", "md", "adder", "-o", "json").stdout
    status: dict[str, Any] = json.loads(out).get("status") or {}
    return status


def wait_for(
    what: str,
    probe: Callable[[], dict[str, Any]],
    done: Callable[[dict[str, Any]], bool],
    timeout: float,
    log: Path,
    trail: list[tuple[Any, ...]] | None = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = probe()
        if trail is not None:
            point = (
                last.get("phase"),
                last.get("currentStepIndex"),
                (last.get("devices") or {}).get("updated"),
            )
            if not trail or trail[-1] != point:
                trail.append(point)
        if done(last):
            return last
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}; last status {json.dumps(last)[:2000]}\n{tail}")


def events(cp: controlplane.ControlPlane, namespace: str) -> list[str]:
    out = cp.kubectl("-n", namespace, "get", "events", "-o", "json").stdout
    return [e.get("reason", "") for e in json.loads(out)["items"]]


def agent_config(root: Path, name: str, namespace: str, kubeconfig: Path, line: int) -> Path:
    config = root / f"{name}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "deviceName": name,
                "namespace": namespace,
                "labels": {
                    "app": "adder",
                    "edgefleet.io/site": "site-0",
                    "edgefleet.io/line": f"line-{line}",
                    "edgefleet.io/hardware-class": "x86",
                },
                "stateDir": str(root / name),
                "trustKeys": [str(root / "trust.pem")],
                "api": {"mode": "kubeconfig", "kubeconfig": str(kubeconfig)},
                "server": {"unixSocket": str(root / f"{name}.sock")},
                "retryInitialSeconds": 0.1,
                "retryMaxSeconds": 1.0,
                "statusIntervalSeconds": 0.5,
                "healthTickSeconds": 0.02,
            }
        )
    )
    return config
