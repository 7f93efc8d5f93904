"""A real ``edgefleet-agent`` process in file mode for tests: its own config, state directory, log and HTTP port.

Tests that must see what a device does with hostile input (does it stay up, what does its status say, how much
memory and log does it use) run the agent as it runs on a device: a subprocess started from the source tree.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle

SRC = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AgentProcess:
    """One device: ``edgefleet-agent`` with a desired file, a status file and a TCP port on 127.0.0.1."""

    def __init__(
        self, root: Path, key: ed25519.Ed25519PublicKey, *, server: dict[str, Any] | None = None, **extra: Any
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.desired = root / "desired.json"
        self.status_file = root / "status.json"
        self.log = root / "agent.log"
        self.port = free_port()
        (root / "trust.pem").write_bytes(bundle.public_key_pem(key))
        doc = {
            "deviceName": "hostile-test",
            "stateDir": str(root / "state"),
            "trustKeys": [str(root / "trust.pem")],
            "api": {"mode": "file", "desiredFile": str(self.desired), "statusFile": str(self.status_file)},
            "server": {"port": self.port, **(server or {})},
            "retryInitialSeconds": 0.1,
            "retryMaxSeconds": 0.5,
            "statusIntervalSeconds": 0.5,
            "healthTickSeconds": 0.02,
            **extra,
        }
        self.config = root / "agent.yaml"
        self.config.write_text(yaml.safe_dump(doc))
        if not self.desired.exists():
            self.desired.write_text(json.dumps({"models": []}))
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        environment = dict(os.environ if env is None else env, PYTHONPATH=str(SRC))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edgefleet.edge_reconciler.main", "--config", str(self.config)],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        return self.proc

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM (SIGKILL after 10 s); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def status(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.status_file.read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def model(self, name: str = "demo") -> dict[str, Any]:
        return next((m for m in self.status().get("models", []) if m["name"] == name), {})

    def condition(self, type_: str) -> dict[str, Any]:
        return next((c for c in self.status().get("conditions", []) if c["type"] == type_), {})

    def peak_rss_bytes(self) -> int:
        """The process's peak resident memory (``VmHWM``)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until ``/readyz`` answers 200 (raises if the process exits first)."""
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"agent exited with {self.proc.returncode if self.proc else None}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("agent did not become ready")


__all__ = ["AgentProcess", "free_port"]
