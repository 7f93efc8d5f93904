"""Where the desired state comes from and where status goes: the device's own EdgeDevice, or local files.

:class:`~edgefleet.adapters.protocols.DeviceControl` is the small Protocol the device loop talks to; two kinds
implement it. :class:`KubeControl` registers the device's
EdgeDevice, heartbeats with a ``coordination.k8s.io`` Lease (the EdgeDevice is only rewritten when its status
changes, so thousands of devices do not flood the API server), watches *only its own* EdgeDevice (field selector on
its name, through the client's one list-and-watch loop: bookmarks, resume after a reconnect, relist on 410) and
patches the status subresource. :class:`FileControl`
serves plain Linux boxes without a cluster and tests: the spec is a YAML file, status a JSON file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from edgefleet.adapters import kube, protocols
from edgefleet.api import common
from edgefleet.api.edgedevice import KIND, EdgeDevice, EdgeDeviceSpec, EdgeDeviceStatus
from edgefleet.core import errors
from edgefleet.edge_reconciler import state, telemetry

log = logging.getLogger(__name__)


MAX_DESIRED_BYTES = 4 * 1024 * 1024


def describe(exc: ValidationError, limit: int = 3) -> str:
    """The first validation errors as ``field.path: message`` (pure); never the offending values themselves."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:limit]:
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
        parts.append(f"{loc or '(top)'}: {error['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


class KubeControl:
    """The device's EdgeDevice and Lease in one namespace."""

    def __init__(
        self,
        client: kube.Client,
        namespace: str,
        name: str,
        *,
        lease_duration_seconds: int = 300,
        retry_initial_seconds: float = 1.0,
        retry_max_seconds: float = 30.0,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.lease_duration_seconds = lease_duration_seconds
        self.retry_initial = retry_initial_seconds
        self.retry_max = retry_max_seconds
        self._labels: dict[str, str] = {}

    async def register(self, labels: Mapping[str, str]) -> None:
        """Create the EdgeDevice if missing, else bring its labels up to date (only the agent's own keys)."""
        self._labels = dict(labels)
        try:
            current = await self.client.get(kube.EDGEDEVICES, self.namespace, self.name)
        except errors.NotFoundError:
            body = {
                "apiVersion": common.API_VERSION,
                "kind": KIND,
                "metadata": {"name": self.name, "namespace": self.namespace, "labels": dict(labels)},
                "spec": {"models": []},
            }
            try:
                await self.client.create(kube.EDGEDEVICES, self.namespace, body)
                log.info("Registered EdgeDevice namespace=%s name=%s", self.namespace, self.name)
            except errors.ConflictError:
                pass
            return
        have = (current.get("metadata") or {}).get("labels") or {}
        if any(have.get(k) != v for k, v in labels.items()):
            patch = {"metadata": {"labels": dict(labels)}}
            await self.client.merge_patch(kube.EDGEDEVICES, self.namespace, self.name, patch)
            log.info("Updated EdgeDevice labels namespace=%s name=%s", self.namespace, self.name)

    async def heartbeat(self, now: dt.datetime) -> None:
        await self.client.renew_lease(self.namespace, self.name, self.name, self.lease_duration_seconds, now)

    async def specs(self) -> AsyncIterator[tuple[EdgeDeviceSpec, int | None] | protocols.SpecRefused]:
        """Level-triggered stream of the desired spec, from the client's list-and-watch loop (which reconnects and
        lists again by itself); a missing or deleted EdgeDevice is registered again, an invalid one is refused."""
        async for change in self.client.watch(
            kube.EDGEDEVICES,
            self.namespace,
            field_selector=f"metadata.name={self.name}",
            retry_initial_seconds=self.retry_initial,
            retry_max_seconds=self.retry_max,
        ):
            if isinstance(change, kube.Listing):
                if not change.items:
                    await self._register_again()  # its ADDED event follows
                    continue
                obj = change.items[0]
            elif change.type == "DELETED":
                await self._register_again()
                continue
            else:
                obj = change.object
            yield self._parse(obj)

    async def _register_again(self) -> None:
        delay = self.retry_initial
        while True:
            try:
                await self.register(self._labels)
                return
            except errors.EdgefleetError as exc:
                log.warning("Failed to register EdgeDevice name=%s error=%s retry_in=%.1fs", self.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)

    def _parse(self, obj: dict[str, object]) -> tuple[EdgeDeviceSpec, int | None] | protocols.SpecRefused:
        meta = obj.get("metadata")
        generation = meta.get("generation") if isinstance(meta, dict) else None
        try:
            device = EdgeDevice.model_validate(obj)
        except ValidationError as exc:
            return protocols.SpecRefused(describe(exc), generation if isinstance(generation, int) else None)
        return device.spec, device.metadata.generation

    async def report(self, status: EdgeDeviceStatus) -> None:
        patch = {"status": telemetry.outbound(status)}
        try:
            await self.client.merge_patch(kube.EDGEDEVICES, self.namespace, self.name, patch, "status")
        except errors.NotFoundError:
            # Not registered yet (or deleted): register, then report.
            await self.register(self._labels)
            await self.client.merge_patch(kube.EDGEDEVICES, self.namespace, self.name, patch, "status")


class FileControl:
    """Desired spec from a YAML file (polled), status to a JSON file: for boxes without a cluster, and tests."""

    def __init__(self, desired_file: Path, status_file: Path, *, poll_seconds: float = 0.1) -> None:
        self.desired_file = desired_file
        self.status_file = status_file
        self.poll_seconds = poll_seconds

    async def register(self, labels: Mapping[str, str]) -> None:
        return None

    async def heartbeat(self, now: dt.datetime) -> None:
        return None

    async def specs(self) -> AsyncIterator[tuple[EdgeDeviceSpec, int | None] | protocols.SpecRefused]:
        seen: bytes | None = None
        generation = 0
        while True:
            try:
                raw = self.desired_file.read_bytes() if self.desired_file.stat().st_size <= MAX_DESIRED_BYTES else None
            except FileNotFoundError:
                raw = b""
            except OSError as exc:  # out of descriptors, an I/O error: look again at the next poll
                log.error("Could not read desired file path=%s error=%s", self.desired_file, exc.strerror or exc)
                await asyncio.sleep(max(self.poll_seconds, 1.0))
                continue
            if raw == b"" and self.desired_file.exists():
                # An existing empty file is one being rewritten (truncate, then write): acting on it would remove
                # every model for a moment. No models is written as `models: []` (or by removing the file).
                await asyncio.sleep(self.poll_seconds)
                continue
            if raw != seen:
                seen = raw
                generation += 1
                if raw is None:
                    yield protocols.SpecRefused(f"{self.desired_file} is over {MAX_DESIRED_BYTES} bytes", generation)
                else:
                    yield self._parse(raw, generation)
            await asyncio.sleep(self.poll_seconds)

    def _parse(self, raw: bytes, generation: int) -> tuple[EdgeDeviceSpec, int | None] | protocols.SpecRefused:
        """A person fixes the file; until then the device keeps the last valid spec and says why in status."""
        try:
            doc = yaml.safe_load(raw) or {}
            return EdgeDeviceSpec.model_validate(doc.get("spec", doc) if isinstance(doc, dict) else doc), generation
        except ValidationError as exc:
            return protocols.SpecRefused(f"{self.desired_file}: {describe(exc)}", generation)
        except (yaml.YAMLError, ValueError, RecursionError) as exc:
            return protocols.SpecRefused(f"{self.desired_file}: not valid YAML ({type(exc).__name__})", generation)

    async def report(self, status: EdgeDeviceStatus) -> None:
        payload = json.dumps(telemetry.outbound(status), sort_keys=True).encode()
        state.write_atomic(self.status_file, payload)


__all__ = ["FileControl", "KubeControl"]
