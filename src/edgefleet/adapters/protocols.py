"""The small Protocols edgefleet's code is written against, one section per external system (STYLE rule 9).

Unit tests use in-repo fakes of them (``edgefleet.testing``); the same contract tests also run against the real thing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol

from edgefleet.adapters import artifacts
from edgefleet.adapters.kube import resources
from edgefleet.api.edgedevice import EdgeDeviceSpec, EdgeDeviceStatus

# --- Kubernetes API ------------------------------------------------------------------------------------------------
# Implemented by edgefleet.adapters.kube.Client (the real API server) and edgefleet.testing.fakekube.FakeKube; the
# contract is tests/adapters/test_kube.py, run against both.


class KubeClient(Protocol):
    """What edgefleet needs from the Kubernetes API. Raises only :mod:`edgefleet.core.errors` types."""

    async def get(self, resource: resources.Resource, namespace: str | None, name: str) -> resources.JsonObject:
        """One object; raises NotFoundError."""
        ...

    async def list(
        self,
        resource: resources.Resource,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> resources.Listing:
        """Every object of ``resource`` in ``namespace`` (None: all namespaces), each with its ``kind``."""
        ...

    async def create(
        self, resource: resources.Resource, namespace: str | None, body: resources.JsonObject
    ) -> resources.JsonObject:
        """Create an object; raises ConflictError when it exists."""
        ...

    async def merge_patch(
        self,
        resource: resources.Resource,
        namespace: str | None,
        name: str,
        patch: resources.JsonObject,
        subresource: str | None = None,
    ) -> resources.JsonObject:
        """JSON merge patch (RFC 7386); a ``metadata.resourceVersion`` in ``patch`` makes it conditional
        (ConflictError when stale); raises NotFoundError."""
        ...

    async def apply(
        self,
        resource: resources.Resource,
        namespace: str | None,
        body: resources.JsonObject,
        *,
        field_manager: str,
        force: bool = False,
    ) -> resources.JsonObject:
        """Server-side apply of ``body`` as ``field_manager`` (creates the object when missing)."""
        ...

    async def delete(self, resource: resources.Resource, namespace: str | None, name: str) -> bool:
        """Delete an object; False when it was already gone."""
        ...

    async def discover(self, api_version: str, kind: str) -> resources.Resource:
        """The resource serving ``kind``; raises InvalidSpecError (UnknownKind) when the cluster serves none."""
        ...

    def watch(
        self,
        resource: resources.Resource,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: int = 300,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
    ) -> AsyncIterator[resources.Change]:
        """List (a :class:`~edgefleet.adapters.kube.Listing`), then every change; resumes after a dropped
        connection and lists again after 410 Gone. Never ends by itself."""
        ...


# --- edge agent ------------------------------------------------------------------------------------------------------


class ArtifactFetch(Protocol):
    """Download ``uri`` into ``dest`` until it holds ``size`` bytes (:class:`edgefleet.adapters.artifacts.Fetcher`:
    mirrors first, then the origin; ``oci://`` artifacts re-packed into the bundle tar).

    With ``digest`` the bytes must also hash to it (a source serving other bytes is skipped for the next one).
    ``max_bytes_per_second`` paces the download. Raises :class:`~edgefleet.core.errors.TransientError` when a retry
    may help (the partial file is kept), :class:`~edgefleet.core.errors.IntegrityError` when the origin served bytes
    that do not verify, and :class:`~edgefleet.core.errors.InvalidSpecError` when the artifact cannot be used as the
    spec names it.
    """

    def __call__(
        self,
        uri: str,
        dest: Path,
        size: int,
        *,
        digest: str | None = None,
        on_progress: Callable[[int], None] | None = None,
        max_bytes_per_second: int | None = None,
    ) -> Awaitable[artifacts.Fetched]: ...


@dataclasses.dataclass(frozen=True)
class SpecRefused:
    """The device's desired spec (of ``generation``) could not be accepted; ``message`` says which fields and why.
    The device keeps converging on the last spec it accepted and reports the refusal in its status."""

    message: str
    generation: int | None = None


class DeviceControl(Protocol):
    """The API side of the device loop: the device's own EdgeDevice and Lease, or local files
    (:mod:`edgefleet.edge_reconciler.control`). Failures are :class:`~edgefleet.core.errors.EdgefleetError`."""

    async def register(self, labels: Mapping[str, str]) -> None:
        """Create the device's EdgeDevice, or bring the agent's own labels on it up to date."""

    async def heartbeat(self, now: dt.datetime) -> None:
        """Renew the device's Lease."""

    def specs(self) -> AsyncIterator[tuple[EdgeDeviceSpec, int | None] | SpecRefused]:
        """The desired spec and its generation, level-triggered: again after every reconnect; a spec that does not
        validate arrives as :class:`SpecRefused` (never as an exception that ends the stream)."""

    async def report(self, status: EdgeDeviceStatus) -> None:
        """Write the device's status (through :func:`edgefleet.edge_reconciler.telemetry.outbound`)."""


__all__ = ["ArtifactFetch", "DeviceControl", "KubeClient", "SpecRefused"]
