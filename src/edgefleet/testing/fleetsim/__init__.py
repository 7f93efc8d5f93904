"""A simulated fleet: thousands of real edge agents (:class:`edgefleet.edge_reconciler.device.Agent`) as asyncio
tasks in a few processes, against a real API server. See :mod:`edgefleet.testing.fleetsim.fleet` and
``python -m edgefleet.testing.fleetsim --help``."""

from edgefleet.testing.fleetsim import fleet, layout

__all__ = ["fleet", "layout"]
