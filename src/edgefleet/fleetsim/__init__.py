"""A simulated fleet: thousands of real edge agents (:class:`edgefleet.edge_reconciler.device.Agent`) as asyncio
tasks in a few processes, against a real API server. See :mod:`edgefleet.fleetsim.fleet` and
``python -m edgefleet.fleetsim --help``."""

from edgefleet.fleetsim import fleet, layout

__all__ = ["fleet", "layout"]
