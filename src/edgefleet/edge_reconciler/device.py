"""The device loop: converge to the desired models, watch each switch on probation, roll back on its own.

Five asyncio tasks share one :class:`Agent`:

``specs``      follows the desired spec (the device's own EdgeDevice, or a file) and caches it in the journal, so a
               restart without network keeps converging on the last spec it saw.
``reconcile``  level-triggered: plans with :func:`edgefleet.core.convergence.plan` and applies the plan; one
               install at a time (download -> verify -> install into the inactive slot -> golden samples ->
               switch). Transient failures are retried with exponential backoff.
``monitor``    evaluates :func:`edgefleet.core.health.evaluate` for models on probation every
               ``healthTickSeconds`` and at once when an inference errs or emits NaN/Inf; an Unhealthy verdict
               switches back to the previous slot, whose session is kept warm for exactly this moment.
``report``     sends status through :mod:`edgefleet.edge_reconciler.telemetry` when something changed (at most
               every ``statusIntervalSeconds`` for mere health numbers); while the API is unreachable it keeps
               the latest status and sends it after reconnecting.
``heartbeat``  registers the device and renews its Lease.

Every state change is committed to the journal before it takes effect in memory (see
:mod:`edgefleet.edge_reconciler.state`), and :mod:`edgefleet.edge_reconciler.faults` marks where tests cut power.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import random
import time
from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet import __version__
from edgefleet.adapters import bundle, onnx_session
from edgefleet.api.common import Condition
from edgefleet.api.edgedevice import Capabilities, DesiredModel, EdgeDeviceStatus, ModelState
from edgefleet.api.modeldeployment import HealthSpec
from edgefleet.core import convergence, health
from edgefleet.core.errors import EdgefleetError
from edgefleet.edge_reconciler import control, faults, installer, serving, state, telemetry

log = logging.getLogger(__name__)
MAX_PROBATION_RESTARTS = 2  # the third unclean start during one probation rolls the version back


@dataclasses.dataclass(frozen=True)
class Settings:
    """The loop's knobs (from :class:`~edgefleet.edge_reconciler.config.AgentConfig`)."""

    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    max_bundle_bytes: int = 512 * 1024**2
    lease_duration_seconds: int = 600
    status_interval_seconds: float = 300.0
    health_tick_seconds: float = 0.05
    retry_initial_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    intra_op_threads: int = 1
    resync_seconds: float = 30.0
    report_coalesce_seconds: float = 0.1
    """Changes are gathered this long before a status write (an install's quick phases become one write)."""
    verdict_check_seconds: float = 1.0
    """How often the report loop looks for a changed health *verdict* (reported at once); mere health numbers are
    coalesced to one write per ``status_interval_seconds``."""


@dataclasses.dataclass(frozen=True)
class RollbackRecord:
    """One automatic rollback: from which digest, why, and how long from detectable to serving the previous."""

    name: str
    digest: str
    code: str
    seconds: float


def _fingerprint(status: EdgeDeviceStatus) -> str:
    """The status without ``evaluatedAt`` (pure): equal fingerprints need no new write."""
    wire = status.to_wire()
    for model in wire.get("models", []):
        (model.get("health") or {}).pop("evaluatedAt", None)
    return json.dumps(wire, sort_keys=True)


def _wall() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Agent:
    """One device."""

    def __init__(
        self,
        *,
        control: control.Control,
        store: state.Store,
        registry: serving.Registry,
        fetch: installer.Fetch,
        trusted_keys: Sequence[ed25519.Ed25519PublicKey],
        settings: Settings,
        capabilities: Capabilities | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = _wall,
    ) -> None:
        self.control = control
        self.store = store
        self.registry = registry
        self.fetch = fetch
        self.trusted_keys = list(trusted_keys)
        self.settings = settings
        self.capabilities = capabilities
        self.clock = clock
        self.wall = wall
        self.phases: dict[str, telemetry.Phase] = {}
        self.verdicts: dict[str, health.Verdict] = {}
        self.fallback: dict[str, serving.Loaded] = {}
        self.switched_at: dict[str, float] = {}
        self.installer = installer.Installer(
            store=store,
            registry=registry,
            fetch=fetch,
            trusted_keys=trusted_keys,
            phase=self._phase,
            clock=clock,
            max_bundle_bytes=settings.max_bundle_bytes,
            retry_initial_seconds=settings.retry_initial_seconds,
            retry_max_seconds=settings.retry_max_seconds,
            intra_op_threads=settings.intra_op_threads,
        )
        self.rollbacks: list[RollbackRecord] = []
        self.conditions: list[Condition] = []
        self.reports = 0
        self.wake = asyncio.Event()
        self.dirty = asyncio.Event()
        self.lock = asyncio.Lock()
        self._evaluated: dict[str, int] = {}
        self._last_reported: str | None = None

    # --- internals -----------------------------------------------------------------------------------------------

    def _phase(self, name: str, state_: ModelState, message: str | None) -> None:
        old = self.phases.get(name)
        if old is not None and old.state == state_ and old.message == message:
            return
        since = old.since if old is not None and old.state == state_ else self.wall()
        self.phases[name] = telemetry.Phase(state_, message, since)
        self.dirty.set()

    def _health_spec(self, name: str) -> HealthSpec:
        desired = next((m for m in self.store.journal.spec.models if m.name == name), None)
        return desired.health if desired is not None else HealthSpec()

    async def load_slot(self, name: str, slot: state.SlotName) -> serving.Loaded:
        """Re-verify a slot's bundle and open it (see :meth:`installer.Installer.load_slot`)."""
        return await self.installer.load_slot(name, slot, self._health_spec(name))

    # --- start-up ------------------------------------------------------------------------------------------------

    async def recover(self) -> None:
        """Serve what the journal names, after re-verifying it; finish nothing half-done (it is redone)."""
        self.store.collect_garbage()
        for name, rec in list(self.store.journal.models.items()):
            rec = self._count_probation_restart(rec)
            if rec.active is None:
                continue
            order = [rec.active] + ([rec.previous] if rec.previous else [])
            for slot in order:
                try:
                    loaded = await self.load_slot(name, slot)
                except (OSError, bundle.BundleError, onnx_session.InferenceError) as exc:
                    log.error("Discarded damaged slot model=%s slot=%s error=%s", name, slot, exc)
                    rec = self.store.model(name)
                    slots = {k: v for k, v in rec.slots.items() if k != slot}
                    active = rec.active if rec.active != slot else None
                    self.store.update_model(rec.model_copy(update={"slots": slots, "active": active}))
                    continue
                if slot != rec.active:
                    # The active slot was damaged: the verified previous one becomes active.
                    self.store.update_model(
                        self.store.model(name).model_copy(update={"active": slot, "probation_since": None})
                    )
                self.registry.swap(loaded, kind="recover")
                self._phase(name, "Active", f"serving version {loaded.version} after restart")
                break
            rec = self.store.model(name)
            if rec.probation_since is not None and rec.previous is not None:
                # Samples died with the process: probation starts over, with the rollback target warm again.
                self.switched_at[name] = self.clock()
                self.registry.alarm.set()  # start ticking
                with contextlib.suppress(OSError, bundle.BundleError, onnx_session.InferenceError):
                    self.fallback[name] = await self.load_slot(name, rec.previous)
            elif rec.probation_since is not None:
                self.store.update_model(rec.model_copy(update={"probation_since": None}))
        self.registry.ready = True

    def _count_probation_restart(self, rec: state.ModelRecord) -> state.ModelRecord:
        """A version that keeps taking the agent down while on probation is rolled back before it is loaded."""
        bad, previous = rec.active_slot, rec.previous
        if rec.probation_since is None or bad is None or previous is None:
            return rec
        restarts = rec.probation_restarts + 1
        if restarts <= MAX_PROBATION_RESTARTS:
            rec = rec.model_copy(update={"probation_restarts": restarts})
            self.store.update_model(rec)
            return rec
        reason = (
            f"WorkerCrashes: the agent stopped uncleanly {restarts} times while version {bad.version} was on probation"
        )
        rec = rec.model_copy(
            update={
                "active": previous,
                "probation_since": None,
                "probation_restarts": 0,
                "rejected": rec.rejected | {bad.digest: "RolledBack"},
                "rejected_reason": rec.rejected_reason | {bad.digest: f"rolled back version {bad.version}: {reason}"},
            }
        )
        self.store.update_model(rec)
        log.warning("Rolled back model=%s from=%s reason=WorkerCrashes restarts=%d", rec.name, bad.version, restarts)
        return rec

    def _clean_shutdown(self) -> None:
        """Record a clean stop: probation restarts only count crashes."""
        for rec in list(self.store.journal.models.values()):
            if rec.probation_restarts:
                self.store.update_model(rec.model_copy(update={"probation_restarts": 0}))

    # --- convergence ---------------------------------------------------------------------------------------------

    async def reconcile(self) -> float | None:
        """Plan and apply once; returns when to look again (``None``: on the next spec change or resync)."""
        journal = self.store.journal
        plan = convergence.plan(journal.spec.models, journal.view())
        requeue: float | None = None
        for step in plan.of("remove"):
            await self.remove(step.name)
        for step in plan.steps:
            desired = step.desired
            if desired is None:
                continue
            rec = self.store.model(step.name)
            if step.kind == "in-sync":
                if self.phases.get(step.name, telemetry.Phase("Pending", None, self.wall())).state != "Active":
                    self._phase(step.name, "Active", f"serving version {desired.version}")
            elif step.kind == "blocked":
                digest = desired.artifact.digest
                kind: ModelState = "RolledBack" if rec.rejected.get(digest) == "RolledBack" else "Failed"
                self._phase(step.name, kind, rec.rejected_reason.get(digest, step.reason))
            elif step.kind == "wait":
                current = self.phases.get(step.name)
                message = f"version {desired.version} waits until the active version finishes probation"
                self._phase(step.name, current.state if current else "Active", message)
                requeue = min(requeue or 1.0, 1.0)
            elif step.kind == "install":
                wait = self.installer.retry_in(desired)
                if wait <= 0:
                    await self.install(desired)
                    wait = self.installer.retry_in(desired)
                if wait > 0:
                    requeue = wait if requeue is None else min(requeue, wait)
        return requeue

    async def remove(self, name: str) -> None:
        """Unload a model that left the spec and delete its files."""
        async with self.lock:
            self.registry.remove(name)
            self.fallback.pop(name, None)
            self.switched_at.pop(name, None)
            self.store.drop_model(name)
            self.phases.pop(name, None)
            self.verdicts.pop(name, None)
        self.dirty.set()
        log.info("Removed model model=%s", name)

    async def install(self, desired: DesiredModel) -> None:
        """Prepare ``desired`` in the inactive slot, then switch to it (see :mod:`installer`)."""
        prepared = await self.installer.prepare(desired)
        if prepared is None:
            return
        name, digest = desired.name, desired.artifact.digest
        current = next((m for m in self.store.journal.spec.models if m.name == name), None)
        if current is None or current.artifact.digest != digest:
            # The spec moved on while this version was being installed: never switch to a stale version.
            self.installer.abandon(desired)
            self.wake.set()
            return
        async with self.lock:
            rec = self.store.model(name)
            had_active = rec.active is not None and rec.active_slot is not None
            self.store.update_model(
                rec.model_copy(
                    update={
                        "slots": rec.slots | {prepared.slot: prepared.record},
                        "active": prepared.slot,
                        "probation_since": self.wall().timestamp() if had_active else None,
                        "install": None,
                    }
                )
            )
            faults.reached("switch")
            old = self.registry.swap(prepared.loaded)
            if had_active and old is not None:
                self.fallback[name] = old
                self.switched_at[name] = self.clock()
                self.registry.alarm.set()  # start ticking
        self.installer.finished(desired)
        self.store.collect_garbage()
        self._phase(name, "Active", f"switched to version {desired.version}")
        log.info("Switched model model=%s version=%s digest=%s slot=%s", name, desired.version, digest, prepared.slot)

    # --- health --------------------------------------------------------------------------------------------------

    async def check_probation(self) -> None:
        """Evaluate every model on probation once; roll back or confirm as the verdict says."""
        now = self.clock()
        for name in list(self.switched_at):
            rec = self.store.journal.models.get(name)
            recorder = self.registry.recorder(name)
            if rec is None or rec.probation_since is None or recorder is None:
                self.switched_at.pop(name, None)
                continue
            spec = self._health_spec(name)
            if self._evaluated.get(name) != recorder.total or name not in self.verdicts:
                recorder.prune(now - spec.window_seconds)
                self.verdicts[name] = health.evaluate(recorder.samples, spec, now)
                self._evaluated[name] = recorder.total
            verdict = self.verdicts[name]
            outcome = health.probation_outcome(verdict, self.switched_at[name], now, spec)
            if outcome == "rollback":
                detected = recorder.samples[-1].at if recorder.samples else now
                await self.rollback(name, verdict, detected)
            elif outcome == "confirm":
                async with self.lock:
                    confirmed = rec.model_copy(update={"probation_since": None})
                    try:
                        self.store.update_model(confirmed)
                    except OSError as exc:
                        # Safe to keep in memory only: after a power cut before a later commit, probation
                        # simply runs again. Not confirming would hold every later version back.
                        models = {**self.store.journal.models, name: confirmed}
                        self.store.remember(self.store.journal.model_copy(update={"models": models}))
                        log.error("Could not persist the passed probation model=%s error=%s", name, exc)
                    self.fallback.pop(name, None)
                    self.switched_at.pop(name, None)
                self._phase(
                    name, "Active", f"version {rec.active_slot.version if rec.active_slot else '?'} passed probation"
                )
                self.wake.set()

    async def rollback(self, name: str, verdict: health.Verdict, detected_at: float) -> None:
        """Switch back to the previous slot; the failed digest is not reinstalled until the spec changes."""
        async with self.lock:
            rec = self.store.model(name)
            bad, previous = rec.active_slot, rec.previous
            if bad is None or previous is None:
                return
            target = self.fallback.get(name)
            if target is None:
                target = await self.load_slot(name, previous)
            reason = f"{verdict.code}: {verdict.reason}"
            self.store.update_model(
                rec.model_copy(
                    update={
                        "active": previous,
                        "probation_since": None,
                        "rejected": rec.rejected | {bad.digest: "RolledBack"},
                        "rejected_reason": rec.rejected_reason
                        | {bad.digest: f"rolled back version {bad.version} to {target.version}: {reason}"},
                    }
                )
            )
            faults.reached("rollback")
            self.registry.swap(target, kind="rollback")
            elapsed = self.clock() - detected_at
            self.fallback.pop(name, None)
            self.switched_at.pop(name, None)
        self.rollbacks.append(RollbackRecord(name, bad.digest, verdict.code or "Unhealthy", elapsed))
        self.verdicts[name] = verdict
        self._phase(name, "RolledBack", f"rolled back version {bad.version} to {target.version}: {reason}")
        log.warning(
            "Rolled back model=%s from=%s to=%s reason=%s seconds=%.4f",
            name, bad.version, target.version, verdict.code, elapsed,
        )  # fmt: skip
        self.wake.set()

    # --- status --------------------------------------------------------------------------------------------------

    def build_status(self) -> EdgeDeviceStatus:
        now = self.clock()
        for loaded in self.registry.all():
            recorder = self.registry.recorder(loaded.name)
            if recorder is not None and loaded.name not in self.switched_at:
                spec = self._health_spec(loaded.name)
                recorder.prune(now - spec.window_seconds)
                self.verdicts[loaded.name] = health.evaluate(recorder.samples, spec, now)
        served = {m.name for m in self.registry.all()}
        return telemetry.device_status(
            journal=self.store.journal,
            phases=self.phases,
            verdicts={k: v for k, v in self.verdicts.items() if k in served},
            capabilities=self.capabilities,
            agent_version=__version__,
            previous_conditions=self.conditions,
            now=self.wall(),
        )

    # --- tasks ---------------------------------------------------------------------------------------------------

    async def follow_specs(self) -> None:
        async for spec, generation in self.control.specs():
            async with self.lock:
                old = self.store.journal
                changed = old.spec != spec or old.observed_generation != generation
                journal = old.model_copy(update={"spec": spec, "observed_generation": generation})
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
                self.dirty.set()

    async def reconcile_forever(self) -> None:
        while True:
            self.wake.clear()
            try:
                requeue = await self.reconcile()
            except (EdgefleetError, OSError) as exc:  # OSError: the state directory (full disk, I/O error)
                log.error("Reconcile failed error=%s", exc)
                requeue = self.settings.retry_initial_seconds
            timeout = self.settings.resync_seconds if requeue is None else max(requeue, 0.01)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)

    async def monitor_forever(self) -> None:
        while True:
            # Tick only while something is on probation; otherwise sleep until an alarm or a switch (thousands of
            # idle simulated devices must not wake 20 times a second each).
            tick = self.settings.health_tick_seconds if self.switched_at else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.registry.alarm.wait(), tick)
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

    def _verdict_names(self) -> dict[str, str]:
        """The current verdict per served model (cheap: no status is built)."""
        now = self.clock()
        out: dict[str, str] = {}
        for loaded in self.registry.all():
            recorder = self.registry.recorder(loaded.name)
            if recorder is None:
                continue
            spec = self._health_spec(loaded.name)
            recorder.prune(now - spec.window_seconds)  # only the window counts; keeps this O(window), not O(uptime)
            out[loaded.name] = health.evaluate(recorder.samples, spec, now).verdict
        return out

    async def report_forever(self) -> None:
        delay = self.settings.retry_initial_seconds
        interval = self.settings.status_interval_seconds
        tick = min(interval, self.settings.verdict_check_seconds)
        last_attempt = self.clock()
        reported_verdicts: dict[str, str] = {}
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.dirty.wait(), tick)
            if (
                not self.dirty.is_set()
                and self.clock() - last_attempt < interval
                and self._verdict_names() == reported_verdicts
            ):
                continue  # only health numbers moved: they wait for the next status interval
            # Gather the burst before writing: the quick phases of an install (Downloading, Verifying, Installing,
            # switched) become one status write instead of one each.
            await asyncio.sleep(self.settings.report_coalesce_seconds)
            self.dirty.clear()
            last_attempt = self.clock()
            # The verdicts this status carries (nothing awaits in between): a verdict that changes while the write
            # is in flight must still count as unreported.
            verdicts = self._verdict_names()
            status = self.build_status()
            fingerprint = _fingerprint(status)
            if fingerprint == self._last_reported:
                reported_verdicts = verdicts
                continue  # nothing but timestamps changed: do not rewrite the EdgeDevice
            try:
                await self.control.report(status)
            except EdgefleetError as exc:
                log.warning("Buffered status (API unreachable) error=%s retry_in=%.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max_seconds)
                self.dirty.set()
                continue
            delay = self.settings.retry_initial_seconds
            self._last_reported = fingerprint
            reported_verdicts = verdicts
            self.conditions = list(status.conditions)
            self.reports += 1

    async def heartbeat_forever(self) -> None:
        delay = self.settings.retry_initial_seconds
        registered = False
        renewals = 0
        period = self.settings.lease_duration_seconds / 4
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
            except EdgefleetError as exc:
                log.warning("Missed heartbeat error=%s", exc)
                delay = min(max(delay, self.settings.retry_initial_seconds), period)
            await asyncio.sleep(delay)

    async def run(self) -> None:
        """Recover, then run every task until cancelled."""
        await self.recover()
        self.dirty.set()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.follow_specs(), name="specs")
                group.create_task(self.reconcile_forever(), name="reconcile")
                group.create_task(self.monitor_forever(), name="monitor")
                group.create_task(self.report_forever(), name="report")
                group.create_task(self.heartbeat_forever(), name="heartbeat")
        except asyncio.CancelledError:
            self._clean_shutdown()
            raise


__all__ = ["Agent", "RollbackRecord", "Settings"]
