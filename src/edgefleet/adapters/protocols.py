"""Small Protocols for the external systems edgefleet talks to (STYLE rule 9).

Each section belongs to the part of edgefleet that depends on the system; unit tests may pass an in-repo fake, and
the same behaviour is also tested against the real thing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol

from edgefleet.api.edgedevice import EdgeDeviceSpec, EdgeDeviceStatus

# --- edge agent ------------------------------------------------------------------------------------------------------


class ArtifactFetch(Protocol):
    """Download ``uri`` into ``dest`` until it holds ``size`` bytes (:func:`edgefleet.adapters.artifacts.download`).

    Raises :class:`~edgefleet.core.errors.TransientError` when a retry may help (the partial file is kept) and
    :class:`~edgefleet.core.errors.InvalidSpecError` when the artifact cannot be used as the spec names it.
    """

    def __call__(
        self, uri: str, dest: Path, size: int, *, on_progress: Callable[[int], None] | None = None
    ) -> Awaitable[Path]: ...


class DeviceControl(Protocol):
    """The API side of the device loop: the device's own EdgeDevice and Lease, or local files
    (:mod:`edgefleet.edge_reconciler.control`). Failures are :class:`~edgefleet.core.errors.EdgefleetError`."""

    async def register(self, labels: Mapping[str, str]) -> None:
        """Create the device's EdgeDevice, or bring the agent's own labels on it up to date."""

    async def heartbeat(self, now: dt.datetime) -> None:
        """Renew the device's Lease."""

    def specs(self) -> AsyncIterator[tuple[EdgeDeviceSpec, int | None]]:
        """The desired spec and its generation, level-triggered: again after every reconnect."""

    async def report(self, status: EdgeDeviceStatus) -> None:
        """Write the device's status (through :func:`edgefleet.edge_reconciler.telemetry.outbound`)."""


__all__ = ["ArtifactFetch", "DeviceControl"]
