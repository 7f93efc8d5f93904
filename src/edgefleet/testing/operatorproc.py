"""The real operator process (``kopf run -m edgefleet.operator``) for control-plane tests and benchmarks: its
signing-key Secret, its environment and the child process itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle
from edgefleet.testing import controlplane

REPO = controlplane.REPO


def create_signing_secret(cp: controlplane.ControlPlane, namespace: str, key: ed25519.Ed25519PrivateKey) -> None:
    """The Secret ``<namespace>/signing`` the operator signs bundles with."""
    pem = bundle.private_key_pem(key).decode()
    cp.kubectl("-n", namespace, "create", "secret", "generic", "signing", f"--from-literal=signing-key.pem={pem}")


def operator_env(
    cp: controlplane.ControlPlane,
    namespace: str,
    store_dir: Path,
    store_port: int,
    store_url: str | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The operator's environment: this control plane, a local artifact store, 1 s resync."""
    return {
        **os.environ,
        "KUBECONFIG": str(cp.kubeconfig),
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]),
        "EDGEFLEET_STORE_DIR": str(store_dir),
        "EDGEFLEET_STORE_PORT": str(store_port),
        "EDGEFLEET_STORE_HOST": "127.0.0.1",
        "EDGEFLEET_STORE_URL": store_url or f"http://127.0.0.1:{store_port}",
        "EDGEFLEET_SIGNING_SECRET": f"{namespace}/signing",
        "EDGEFLEET_RESYNC_SECONDS": "1",
        **(extra or {}),
    }


class OperatorProcess:
    """``kopf run -m edgefleet.operator`` as a child process that a test can kill and start again."""

    def __init__(self, env: dict[str, str], namespace: str, log: Path) -> None:
        self.env, self.namespace, self.log = env, namespace, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kopf",
                    "run",
                    "--standalone",
                    "--namespace",
                    self.namespace,
                    "-m",
                    "edgefleet.operator",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
