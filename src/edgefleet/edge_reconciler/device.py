"""The device loop: converge to the desired models, watch each switch on probation, roll back on its own.

:class:`Agent` wires one device's parts together and runs five asyncio tasks over them:

``specs``      follows the desired spec (the device's own EdgeDevice, or a file) and caches it in the journal, so a
               restart without network keeps converging on the last spec it saw.
``reconcile``  level-triggered: plans with :func:`edgefleet.core.convergence.plan` and applies the plan; one
               install at a time (download -> verify -> install into the inactive slot -> golden samples ->
               switch). Transient failures are retried with exponential backoff.
``monitor``    checks the models on probation every ``healthTickSeconds``, and at once when an inference errs or
               emits NaN/Inf (:class:`~edgefleet.edge_reconciler.monitor.HealthMonitor`,
               :mod:`edgefleet.core.probation`); an Unhealthy verdict switches back to the previous slot, whose
               session is kept warm for exactly this moment.
``report``     sends status when something changed (:class:`~edgefleet.edge_reconciler.reporting.StatusReporter`).
``heartbeat``  registers the device and renews its Lease (three times per ``leaseDurationSeconds``; a missed renewal
               is retried as soon as anything else reaches the API server again).
``benchmarks`` times the compiled candidates the operator asks about (``spec.benchmarks``) off the request path
               (:mod:`edgefleet.edge_reconciler.benchmarking`).

Alongside ``reconcile``, the :class:`~edgefleet.edge_reconciler.prestage.Stager` downloads a later revision into the
inactive slot ahead of activation when the desired entry asks for it (``rollout.prestage``).

The parts: :class:`~edgefleet.edge_reconciler.installer.Installer` prepares a version in the inactive slot,
:class:`~edgefleet.edge_reconciler.switching.Switcher` makes every change of what serves (journal first, then
memory; see :mod:`edgefleet.edge_reconciler.state`), the health monitor holds the probation state, the reporter the
phases. :mod:`edgefleet.edge_reconciler.faults` marks where tests cut power.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import protocols
from edgefleet.api.edgedevice import Capabilities, DesiredModel, ModelState
from edgefleet.core import convergence, deviceconditions
from edgefleet.core.errors import EdgefleetError
from edgefleet.edge_reconciler import (
    benchmarking,
    config,
    installer,
    monitor,
    prestage,
    reporting,
    serving,
    state,
    switching,
)

log = logging.getLogger(__name__)
EXPIRED = deviceconditions.EXPIRED
RENEWALS_PER_LEASE = 3
"""Lease renewals per ``leaseDurationSeconds``: two renewals may be missed before the operator counts the device as
unreachable (kubelet renews its node Lease four times per duration; three keeps steady-state writes lower)."""


def _wall() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Agent:
    """One device.

    ``installer_type`` builds the installer from the settings; the fleet simulator passes a subclass that shares
    onnxruntime sessions between the devices of one process.
    """

    def __init__(
        self,
        *,
        control: protocols.DeviceControl,
        store: state.Store,
        registry: serving.Registry,
        fetch: protocols.ArtifactFetch,
        trusted_keys: Sequence[ed25519.Ed25519PublicKey],
        settings: config.AgentSettings,
        capabilities: Capabilities | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = _wall,
        installer_type: type[installer.Installer] = installer.Installer,
    ) -> None:
        self.control = control
        self.store = store
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self.wall = wall
        self.wake = asyncio.Event()
        self.reached = asyncio.Event()
        """Set whenever something reached the API server (a status write, a spec): a missed heartbeat retries now."""
        self.lock = asyncio.Lock()
        self.monitor = monitor.HealthMonitor(registry, lambda: store.journal)
        self.reporter = reporting.StatusReporter(
            control=control,
            store=store,
            monitor=self.monitor,
            settings=settings,
            capabilities=capabilities,
            clock=clock,
            wall=wall,
            on_written=self.reached.set,
        )
        self.installer = installer_type(
            store=store,
            registry=registry,
            fetch=fetch,
            trusted_keys=trusted_keys,
            phase=self.reporter.phase,
            clock=clock,
            max_bundle_bytes=settings.max_bundle_bytes,
            retry_initial_seconds=settings.retry_initial_seconds,
            retry_max_seconds=settings.retry_max_seconds,
            intra_op_threads=settings.intra_op_threads,
            downloads=self.reporter.download,
        )
        self.benchmarker = benchmarking.Benchmarker(
            root=store.root,
            fetch=fetch,
            trusted_keys=trusted_keys,
            reporter=self.reporter,
            intra_op_threads=settings.intra_op_threads,
        )
        self.bench_wake = asyncio.Event()
        self.stager = prestage.Stager(store=store, installer=self.installer, reporter=self.reporter, clock=clock)
        self.switcher = switching.Switcher(
            store=store,
            registry=registry,
            installer=self.installer,
            monitor=self.monitor,
            reporter=self.reporter,
            lock=self.lock,
            wake=self.wake,
            clock=clock,
            wall=wall,
        )

    @property
    def rollbacks(self) -> list[switching.RollbackRecord]:
        """Every automatic rollback since start, oldest first."""
        return self.switcher.rollbacks

    @property
    def reports(self) -> int:
        """Status writes since start."""
        return self.reporter.reports

    # --- convergence ---------------------------------------------------------------------------------------------

    async def reconcile(self) -> float | None:
        """Plan and apply once; returns when to look again (``None``: on the next spec change or resync)."""
        journal = self.store.journal
        plan = convergence.plan(journal.spec.models, journal.view(), self.wall())
        requeue: float | None = None
        for step in plan.of("remove"):
            await self.switcher.remove(step.name)
        for step in plan.steps:
            desired = step.desired
            if desired is None:
                continue
            rec = self.store.model(step.name)
            current = self.reporter.phase_of(step.name)
            if step.kind == "in-sync":
                if current is None or current.state != "Active":
                    self.reporter.phase(step.name, "Active", f"serving version {desired.version}")
            elif step.kind == "blocked":
                digest = desired.artifact.digest
                kind: ModelState = "RolledBack" if rec.rejected.get(digest) == "RolledBack" else "Failed"
                self.reporter.phase(step.name, kind, rec.rejected_reason.get(digest, step.reason))
            elif step.kind == "expired":
                # Never begin an install from an entry the operator stopped vouching for (the revision may have been
                # aborted or superseded while this device was away); serve what is active and say why.
                active = rec.active_slot
                serving = f"serving version {active.version}" if active is not None else "serving nothing"
                message = (
                    f"{EXPIRED}: version {desired.version} is not installed: {step.reason}; {serving} until the "
                    "operator refreshes the entry"
                )
                if current is None or current.message != message:
                    log.warning("Refused expired desired entry model=%s version=%s", step.name, desired.version)
                self.reporter.phase(step.name, "Pending", message, reason=EXPIRED)
            elif step.kind == "wait":
                message = f"version {desired.version} waits until the active version finishes probation"
                self.reporter.phase(step.name, current.state if current else "Active", message)
                requeue = min(requeue or 1.0, 1.0)
            elif step.kind == "install":
                wait = self.installer.retry_in(desired)
                if wait <= 0:
                    await self.stager.stop()  # an install goes first; it resumes a download ahead of the same digest
                    await self.install(desired)
                    wait = self.installer.retry_in(desired)
                if wait > 0:
                    requeue = wait if requeue is None else min(requeue, wait)
        ahead = await self.stager.reconcile(plan)
        if ahead is not None:
            requeue = ahead if requeue is None else min(requeue, ahead)
        return requeue

    async def install(self, desired: DesiredModel) -> None:
        """Prepare ``desired`` in the inactive slot, then switch to it (see :mod:`installer`)."""
        prepared = await self.installer.prepare(desired)
        if prepared is not None:
            await self.switcher.switch(desired, prepared)

    # --- health --------------------------------------------------------------------------------------------------

    async def check_probation(self) -> None:
        """Look at every model on probation once; roll back or confirm as its verdict says."""
        now = self.clock()
        for name in self.monitor.watched():
            check = self.monitor.check(name, now)
            if check is None or check.outcome == "watch":
                continue
            if check.outcome == "rollback":
                await self.switcher.rollback(name, check.verdict, check.detected_at)
            else:
                await self.switcher.confirm(check.record)

    # --- tasks ---------------------------------------------------------------------------------------------------

    async def follow_specs(self) -> None:
        async for item in self.control.specs():
            self.reached.set()
            if isinstance(item, protocols.SpecRefused):
                # Keep converging on the last accepted spec; the device's own status says why the new one was not.
                log.error("Refused desired spec generation=%s error=%s", item.generation, item.message)
                self.reporter.refuse(item)
                continue
            spec, generation = item
            self.reporter.refuse(None)
            async with self.lock:
                old = self.store.journal
                changed = old.spec != spec or old.observed_generation != generation
                journal = old.with_spec(spec, generation)
                try:
                    if changed:  # the device's own status writes come back as events with the same spec
                        self.store.commit(journal)
                except OSError as exc:
                    # A full disk must not stop the device: act on the spec from memory (the next commit that
                    # succeeds persists it; after a power cut the watch delivers the spec again); the install
                    # that follows reports the cause in status.
                    self.store.remember(journal)
                    log.error("Could not persist desired spec generation=%s error=%s", generation, exc)
            if changed:
                # Only a changed spec: the watch also delivers the echo of every status write of this agent, and
                # answering each with another write would keep a device with live traffic writing all the time.
                log.info("Observed desired spec generation=%s models=%d", generation, len(spec.models))
                self.wake.set()
                self.bench_wake.set()
                self.reporter.changed()

    async def reconcile_forever(self) -> None:
        while True:
            self.wake.clear()
            try:
                requeue = await self.reconcile()
            except (EdgefleetError, OSError) as exc:  # OSError: the state directory (full disk, I/O error)
                log.error("Reconcile failed error=%s", exc)
                requeue = self.settings.retry_initial_seconds
            except Exception as exc:
                # Never crash-loop: an unforeseen error is a bug to report, not a reason to stop serving.
                log.exception("Reconcile failed unexpectedly error=%s", type(exc).__name__)
                requeue = self.settings.retry_max_seconds
            timeout = self.settings.resync_seconds if requeue is None else max(requeue, 0.01)
            await reporting.wait_event(self.wake, timeout)

    async def monitor_forever(self) -> None:
        while True:
            # Tick only while something is on probation; otherwise sleep until an alarm or a switch (thousands of
            # idle simulated devices must not wake 20 times a second each).
            tick = self.settings.health_tick_seconds if self.monitor.watched() else None
            await reporting.wait_event(self.registry.alarm, tick)
            self.registry.alarm.clear()
            try:
                await self.check_probation()
            except EdgefleetError as exc:
                log.error("Health check failed error=%s", exc)
            except OSError as exc:
                # The journal could not be written (a full disk): the model on probation keeps serving and the
                # verdict is acted on again once the write succeeds; back off instead of retrying every tick.
                log.error("Could not record the probation outcome error=%s", exc)
                await asyncio.sleep(self.settings.retry_initial_seconds)
            except Exception as exc:
                log.exception("Health check failed unexpectedly error=%s", type(exc).__name__)
                await asyncio.sleep(self.settings.retry_max_seconds)

    async def benchmark_forever(self) -> None:
        while True:
            await self.bench_wake.wait()
            self.bench_wake.clear()
            await self.benchmarker.handle(self.store.journal.spec.benchmarks)

    async def heartbeat_forever(self) -> None:
        """Register, then renew the Lease :data:`RENEWALS_PER_LEASE` times per ``leaseDurationSeconds``.

        A missed renewal is retried with backoff, and at once when anything else the agent does reaches the API server
        again (a status write, its spec): the operator counts a device as reachable while its Lease was renewed
        within its duration, so a device that comes back is noticed as soon as it can say so.
        """
        delay = self.settings.retry_initial_seconds
        registered = False
        renewals = 0
        period = self.settings.lease_duration_seconds / RENEWALS_PER_LEASE
        failing = False
        while True:
            try:
                if not registered:
                    await self.control.register(self.settings.labels)
                    registered = True
                await self.control.heartbeat(self.wall())
                # After the first renewal, renew on a random phase: devices that power up together (a plant after
                # an outage) would otherwise renew every Lease in the same second forever after.
                delay = random.uniform(0.0, period) if renewals == 0 else period
                renewals += 1
                failing = False
            except EdgefleetError as exc:
                log.warning("Missed heartbeat error=%s", exc)
                delay = self.settings.retry_initial_seconds if not failing else min(delay * 2, period)
                failing = True
            if not failing:
                await asyncio.sleep(delay)
                continue
            self.reached.clear()
            await reporting.wait_event(self.reached, delay)

    async def run(self) -> None:
        """Recover, then run every task until cancelled."""
        await self.switcher.recover()
        self.reporter.changed()
        self.bench_wake.set()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.follow_specs(), name="specs")
                group.create_task(self.reconcile_forever(), name="reconcile")
                group.create_task(self.monitor_forever(), name="monitor")
                group.create_task(self.reporter.report_forever(), name="report")
                group.create_task(self.heartbeat_forever(), name="heartbeat")
                group.create_task(self.benchmark_forever(), name="benchmarks")
        except asyncio.CancelledError:
            await self.stager.stop()
            self.switcher.clean_shutdown()
            raise


__all__ = ["Agent"]
