"""The pieces around a simulated fleet: source models served over HTTP, a signing key Secret, the trusted public key
and the real operator process (``kopf run -m edgefleet.operator``). Used by ``tests/testing/fleetsim`` and
``benchmarks/fleet_scale.py``."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgefleet.adapters import bundle
from edgefleet.testing import controlplane, models, operatorproc
from edgefleet.testing.adder import manifest
from edgefleet.testing.operatorproc import OperatorProcess

REPO = controlplane.REPO
VERSIONS = (("1.0.0", 1.0), ("2.0.0", 2.0), ("3.0.0", 3.0), ("4.0.0", 4.0), ("5.0.0", 5.0))


@dataclasses.dataclass
class Stack:
    cp: controlplane.ControlPlane
    namespace: str
    url: str
    root: Path
    trust_key: Path
    operator: OperatorProcess

    @property
    def models(self) -> Path:
        return self.root / "models"

    def deployment(
        self, version: str, steps: list[dict[str, Any]], health: dict[str, Any], max_unavailable: str = "100%"
    ) -> str:
        """The ModelDeployment ``adder`` at ``version`` (as JSON for ``kubectl apply -f -``)."""
        body = json.loads(manifest(self.namespace, self.url, version, self.models, steps))
        body["spec"]["health"] = health
        body["spec"]["rollout"]["maxUnavailable"] = max_unavailable
        body["spec"]["rollout"]["progressDeadlineSeconds"] = 1800
        return json.dumps(body)

    def apply(self, body: str) -> None:
        self.cp.kubectl("apply", "-f", "-", input=body)

    def md_status(self) -> dict[str, Any]:
        result = self.cp.kubectl("-n", self.namespace, "get", "md", "adder", "-o", "json", check=False)
        if result.returncode != 0:
            return {}
        status: dict[str, Any] = json.loads(result.stdout).get("status") or {}
        return status


@contextlib.contextmanager
def running(
    cp: controlplane.ControlPlane, namespace: str, root: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """Models, key, artifact store and operator for ``namespace``; everything is stopped on exit."""
    store_dir = root / "models"
    store_dir.mkdir(parents=True, exist_ok=True)
    for version, offset in VERSIONS:
        (store_dir / f"{version}.onnx").write_bytes(models.adder(offset))
    (store_dir / "eval.npz").write_bytes(models.evaluation_set(4))
    key = bundle.generate_key()
    trust = root / "trust.pem"
    trust.write_bytes(bundle.public_key_pem(key.public_key()))
    operatorproc.create_signing_secret(cp, namespace, key)
    with models.served(store_dir) as url:
        env = operatorproc.operator_env(cp, namespace, root / "store", controlplane.free_port(), extra=extra_env)
        operator = OperatorProcess(env, namespace, root / "operator.log")
        operator.start()
        try:
            yield Stack(cp, namespace, url, root, trust, operator)
        finally:
            operator.stop()
