"""Status reporting: each model's phase, and the loop that writes the EdgeDevice status when something changed.

:meth:`StatusReporter.phase` is where every part of the agent says where a model stands (the installer's
Downloading/Verifying/Installing, a switch, a rollback, a failure). A changed phase marks the status *dirty*; the
report loop then gathers the burst for ``reportCoalesceSeconds`` and writes one status
(:func:`edgefleet.edge_reconciler.telemetry.device_status`). Mere health numbers wait for ``statusIntervalSeconds``,
a changed health *verdict* is reported at once (checked every ``verdictCheckSeconds``), and a status that differs
from the last one written only by timestamps is not written at all. While the API is unreachable the loop keeps the
latest status and sends it, with backoff, after reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Callable

from edgefleet import __version__
from edgefleet.adapters import protocols
from edgefleet.api.common import Condition
from edgefleet.api.edgedevice import BenchmarkResult, Capabilities, DownloadReport, EdgeDeviceStatus, ModelState
from edgefleet.core.errors import EdgefleetError
from edgefleet.edge_reconciler import config, monitor, state, telemetry

log = logging.getLogger(__name__)


async def wait_event(event: asyncio.Event, timeout: float | None) -> None:
    """Wait until ``event`` is set, at most ``timeout`` seconds (None: no limit).

    Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancellation that arrives just as the event is set, and a
    loop built on it then runs on after its task was cancelled (an agent that never stops).
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


def fingerprint(status: EdgeDeviceStatus) -> str:
    """The status without ``evaluatedAt`` (pure): equal fingerprints need no new write."""
    wire = status.to_wire()
    for model in wire.get("models", []):
        (model.get("health") or {}).pop("evaluatedAt", None)
    return json.dumps(wire, sort_keys=True)


class StatusReporter:
    """The phases of one device's models and the loop that reports them, with the journal and health verdicts."""

    def __init__(
        self,
        *,
        control: protocols.DeviceControl,
        store: state.Store,
        monitor: monitor.HealthMonitor,
        settings: config.AgentSettings,
        capabilities: Capabilities | None,
        clock: Callable[[], float],
        wall: Callable[[], dt.datetime],
        on_written: Callable[[], None] | None = None,
    ) -> None:
        self.on_written = on_written
        """Called after every status write that reached the API server."""
        self.control = control
        self.store = store
        self.monitor = monitor
        self.settings = settings
        self.capabilities = capabilities
        self.clock = clock
        self.wall = wall
        self.phases: dict[str, telemetry.Phase] = {}
        self.downloads: dict[str, DownloadReport] = {}
        self.conditions: list[Condition] = []  # as last written: transition times carry over
        self.reports = 0
        self.dirty = asyncio.Event()
        self.refused: protocols.SpecRefused | None = None
        self._last_reported: str | None = None
        self.benchmarks: dict[str, BenchmarkResult] = {}  # by request name (edge_reconciler.benchmarking)

    def phase(self, name: str, state_: ModelState, message: str | None, *, reason: str | None = None) -> None:
        """Record where ``name`` stands (a :data:`telemetry.PhaseSink`); ``since`` moves only when the state does.
        ``reason`` names why a desired version waits when its state alone does not (an expired entry)."""
        old = self.phases.get(name)
        if old is not None and old.state == state_ and old.message == message and old.reason == reason:
            return
        since = old.since if old is not None and old.state == state_ else self.wall()
        self.phases[name] = telemetry.Phase(state_, message, since, reason)
        self.dirty.set()

    def download(self, name: str, report: DownloadReport) -> None:
        """Record which source served ``name``'s last download and what failed before it."""
        if self.downloads.get(name) != report:
            self.downloads[name] = report
            self.dirty.set()

    def phase_of(self, name: str) -> telemetry.Phase | None:
        """Where ``name`` stands, if anything was said yet."""
        return self.phases.get(name)

    def forget(self, name: str) -> None:
        """Drop the phase of a model that left the spec."""
        self.phases.pop(name, None)
        self.downloads.pop(name, None)

    def refuse(self, refused: protocols.SpecRefused | None) -> None:
        """The latest desired spec was refused (``None``: a valid one arrived): status says so at once."""
        if refused != self.refused:
            self.refused = refused
            self.dirty.set()

    def benchmark(self, result: BenchmarkResult) -> None:
        """Record where a benchmark request stands (reported with the next status)."""
        self.benchmarks[result.name] = result
        self.dirty.set()

    def forget_benchmark(self, name: str) -> None:
        """Drop the result of a request that left the spec."""
        if self.benchmarks.pop(name, None) is not None:
            self.dirty.set()

    def changed(self) -> None:
        """Something status shows changed outside a phase (a new spec generation, a removal): report it."""
        self.dirty.set()

    def build_status(self) -> EdgeDeviceStatus:
        """The EdgeDevice status now (from the journal, the phases and the monitor's verdicts)."""
        verdicts = self.monitor.served_verdicts(self.clock())
        return telemetry.device_status(
            journal=self.store.journal,
            phases=self.phases,
            verdicts=verdicts,
            capabilities=self.capabilities,
            agent_version=__version__,
            previous_conditions=self.conditions,
            now=self.wall(),
            refused=self.refused,
            benchmarks=[self.benchmarks[name] for name in sorted(self.benchmarks)],
            downloads=self.downloads,
        )

    async def report_forever(self) -> None:
        """Write status whenever it changed (see the module docstring); runs until cancelled."""
        delay = self.settings.retry_initial_seconds
        interval = self.settings.status_interval_seconds
        tick = min(interval, self.settings.verdict_check_seconds)
        last_attempt = self.clock()
        reported_verdicts: dict[str, str] = {}
        while True:
            await wait_event(self.dirty, tick)
            if (
                not self.dirty.is_set()
                and self.clock() - last_attempt < interval
                and self.monitor.verdict_names(self.clock()) == reported_verdicts
            ):
                continue  # only health numbers moved: they wait for the next status interval
            # Gather the burst before writing: the quick phases of an install (Downloading, Verifying, Installing,
            # switched) become one status write instead of one each.
            await asyncio.sleep(self.settings.report_coalesce_seconds)
            self.dirty.clear()
            last_attempt = self.clock()
            # The verdicts this status carries (nothing awaits in between): a verdict that changes while the write
            # is in flight must still count as unreported.
            verdicts = self.monitor.verdict_names(self.clock())
            status = self.build_status()
            written = fingerprint(status)
            if written == self._last_reported:
                reported_verdicts = verdicts
                continue  # nothing but timestamps changed: do not rewrite the EdgeDevice
            try:
                await self.control.report(status)
            except telemetry.TelemetryError:
                raise  # a field outside the allow-list is a bug: stop rather than retry sending it
            except EdgefleetError as exc:
                log.warning("Buffered status (API unreachable) error=%s retry_in=%.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max_seconds)
                self.dirty.set()
                continue
            delay = self.settings.retry_initial_seconds
            if self.on_written is not None:
                self.on_written()
            self._last_reported = written
            reported_verdicts = verdicts
            self.conditions = list(status.conditions)
            self.reports += 1


__all__ = ["StatusReporter", "fingerprint", "wait_event"]
