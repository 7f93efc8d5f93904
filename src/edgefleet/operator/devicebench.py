"""Device benchmarks: ask canary devices of a hardware class to time a target's candidates, and wait for the numbers.

Used by the compile stage (:mod:`edgefleet.operator.compilation`) when the compile host is not of the class the
target's devices report. :meth:`DeviceBenchmarks.measure` writes a ``spec.benchmarks`` entry (one per deployment and
target, :func:`edgefleet.core.devicebench.request_name`) to up to ``per_class`` devices of each class, first in
canary order (:func:`edgefleet.core.devicebench.pick`), waits until they report ``status.benchmarks`` for the
revision or ``timeout_seconds`` pass, and removes the entries again. What they measured goes to
:func:`edgefleet.compiler.selection.pool`; devices that fail or stay silent are left out, and with no numbers at
all the compile keeps its safe choice (FP32). Each write is conditional on the ``resourceVersion`` read and
retried on a conflict, and touches only ``spec.benchmarks`` (the rollout's ``spec.models`` writes do not).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from edgefleet.adapters import fleet, kube, protocols
from edgefleet.api import edgedevice, modeldeployment
from edgefleet.core import devicebench, errors

log = logging.getLogger(__name__)
CONFLICT_RETRIES = 4


@dataclasses.dataclass(frozen=True)
class Measured:
    """What the asked devices reported: timings by device, failures by device, and who stayed silent."""

    asked: tuple[str, ...]
    timings: Mapping[str, Mapping[str, devicebench.Timing]]
    failed: Mapping[str, str]

    def describe(self, hardware_class: str) -> str:
        """One sentence for status and events."""
        silent = [d for d in self.asked if d not in self.timings and d not in self.failed]
        parts = [f"{len(self.timings)} of {len(self.asked)} devices of class {hardware_class} reported benchmarks"]
        if self.failed:
            parts.append("failed: " + ", ".join(f"{d} ({m})" for d, m in sorted(self.failed.items())))
        if silent:
            parts.append("no answer: " + ", ".join(silent))
        return "; ".join(parts)


class DeviceBenchmarks:
    """The operator's side of device benchmarks (see the module docstring)."""

    def __init__(
        self,
        api: protocols.KubeClient,
        devices: fleet.Devices,
        *,
        per_class: int = 2,
        timeout_seconds: float = 300.0,
        poll_seconds: float = 1.0,
        rounds: int = 7,
        budget_seconds: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.api = api
        self.devices = devices
        self.per_class = per_class
        self.timeout_seconds = timeout_seconds
        self.poll_seconds = poll_seconds
        self.rounds = rounds
        self.budget_seconds = budget_seconds
        self.clock = clock
        self.sleep = sleep

    async def classes(self, namespace: str, spec: modeldeployment.ModelDeploymentSpec) -> dict[str, tuple[str, ...]]:
        """The hardware classes each target's devices report."""
        devices = await self.devices.devices(namespace)
        return {t.name: devicebench.classes(devicebench.targeted(devices, spec, t.name)) for t in spec.compile.targets}

    async def measure(
        self,
        namespace: str,
        deployment: str,
        spec: modeldeployment.ModelDeploymentSpec,
        target: str,
        revision: str,
        candidates: Sequence[edgedevice.BenchmarkCandidate],
    ) -> Measured:
        """Ask, wait (bounded), clean up; see the module docstring."""
        devices = devicebench.targeted(await self.devices.devices(namespace), spec, target)
        asked = devicebench.pick(devices, f"{deployment}/{revision}", self.per_class)
        name = devicebench.request_name(deployment, target)
        request = edgedevice.BenchmarkRequest(
            name=name,
            revision=revision,
            candidates=list(candidates),
            rounds=self.rounds,
            budget_seconds=self.budget_seconds,
        )
        written = []
        for device in asked:
            try:
                await self._set(namespace, device, name, request)
                written.append(device)
            except errors.EdgefleetError as exc:
                log.warning("Failed to request benchmark device=%s error=%s", device, exc)
        log.info("Requested device benchmarks deployment=%s target=%s devices=%s", deployment, target, written)
        timings: dict[str, Mapping[str, devicebench.Timing]] = {}
        failed: dict[str, str] = {}
        deadline = self.clock() + self.timeout_seconds
        try:
            while written:
                timings, failed = devicebench.results(await self.devices.devices(namespace), written, name, revision)
                if len(timings) + len(failed) == len(written) or self.clock() >= deadline:
                    break
                await self.sleep(self.poll_seconds)
        finally:
            for device in written:
                try:
                    await self._set(namespace, device, name, None)
                except errors.EdgefleetError as exc:
                    log.warning("Failed to withdraw benchmark device=%s error=%s", device, exc)
        return Measured(tuple(written), timings, failed)

    async def _set(self, namespace: str, device: str, name: str, request: edgedevice.BenchmarkRequest | None) -> None:
        """Put (or remove, ``request`` None) the entry ``name`` of one device's ``spec.benchmarks``."""
        for attempt in range(CONFLICT_RETRIES):
            raw = await self.api.get(kube.EDGEDEVICES, namespace, device)
            current = edgedevice.EdgeDevice.model_validate(raw)
            others = [b for b in current.spec.benchmarks if b.name != name]
            wanted = others + ([request] if request is not None else [])
            if wanted == current.spec.benchmarks:
                return
            patch: dict[str, Any] = {
                "metadata": {"resourceVersion": current.metadata.resource_version},
                "spec": {"benchmarks": [b.to_wire() for b in wanted]},
            }
            try:
                await self.api.merge_patch(kube.EDGEDEVICES, namespace, device, patch)
                return
            except errors.ConflictError:
                if attempt == CONFLICT_RETRIES - 1:
                    raise


__all__ = ["DeviceBenchmarks", "Measured"]
