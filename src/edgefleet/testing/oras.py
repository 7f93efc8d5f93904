"""The real ``oras`` CLI (``oras.land/oras`` ``cmd/oras``), built from Go modules by ``hack/build-oras.sh`` and cached
in ``~/.cache/edgefleet/tools`` like the control plane. Tests use it to show that what the operator pushes is an
ordinary OCI artifact, and that the agent installs one that ``oras`` pushed."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

from edgefleet.testing import controlplane
from edgefleet.testing.registry import Registry

SCRIPT = controlplane.REPO / "hack" / "build-oras.sh"


class OrasError(RuntimeError):
    """oras could not be built, or a command failed; the message has its output."""


@functools.cache
def binary() -> Path:
    """The path of a cached ``oras`` (built on first use)."""
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise OrasError(f"{SCRIPT} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def run(registry: Registry, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``oras ARGS`` with ``registry``'s credentials (a Docker config file) and the test CA."""
    config = cwd / ".oras-config.json"
    config.write_text(json.dumps(registry.docker_config()))
    command = [str(binary()), *args, "--registry-config", str(config), "--ca-file", str(registry.tls.ca_file)]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise OrasError(f"oras {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


__all__ = ["OrasError", "binary", "run"]
