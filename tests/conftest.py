"""Shared fixtures. ``control_plane`` is a real kube-apiserver + etcd for the whole session."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator

import pytest

from edgefleet.testing import controlplane

_counter = itertools.count()


@pytest.fixture(scope="session")
def control_plane() -> Iterator[controlplane.ControlPlane]:
    """Start the real control plane once per session (builds the binaries on first use)."""
    cp = controlplane.start()
    try:
        yield cp
    finally:
        cp.stop()
        if not cp.external and not os.environ.get("EDGEFLEET_KEEP_CONTROLPLANE"):
            shutil.rmtree(cp.workdir, ignore_errors=True)


@pytest.fixture
def namespace(control_plane: controlplane.ControlPlane, request: pytest.FixtureRequest) -> str:
    """A fresh namespace per test (namespaces never finish deleting without a controller-manager, so no cleanup)."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"t{next(_counter)}-{base}"[:63].rstrip("-")
    control_plane.kubectl("create", "namespace", name)
    return name


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how many hostile inputs the bad-input suite tried (each one had to give a clear error)."""
    from edgefleet.testing.badinput import COUNTS

    if COUNTS:
        parts = ", ".join(f"{name}: {count}" for name, count in sorted(COUNTS.items()))
        terminalreporter.write_line(f"bad-input cases tried: {sum(COUNTS.values())} ({parts})")
