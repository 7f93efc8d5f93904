"""Go tools for tests, built from Go modules by ``hack/build-go-tool.sh`` and cached in ``~/.cache/edgefleet/tools``.

``binary("helm")`` returns the path of a cached ``helm`` (building it on first use, as the control plane is built);
the table of tools and their versions is in the script. Set ``EDGEFLEET_TOOL_<NAME>`` to a binary you already have.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from edgefleet.testing import controlplane

SCRIPT = controlplane.REPO / "hack" / "build-go-tool.sh"


class ToolError(RuntimeError):
    """A tool could not be built or run; the message has its output."""


@functools.cache
def binary(name: str) -> Path:
    """The path of Go tool ``name`` (helm, argocd-lua, kstatus, ...), built and cached on first use."""
    if not SCRIPT.exists():
        raise ToolError(f"{SCRIPT} not found: Go tools are built from a checkout of edgefleet")
    result = subprocess.run(["bash", str(SCRIPT), name], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ToolError(f"building {name} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    path = Path(result.stdout.strip().splitlines()[-1])
    if not path.is_file():
        raise ToolError(f"{SCRIPT} {name} printed {path}, which is not a file")
    return path
