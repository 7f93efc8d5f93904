"""Tests use the same local control plane as ``make demo``; see :mod:`edgefleet.adapters.controlplane`."""

from edgefleet.adapters.controlplane import ControlPlane, ControlPlaneError, running, start

__all__ = ["ControlPlane", "ControlPlaneError", "running", "start"]
