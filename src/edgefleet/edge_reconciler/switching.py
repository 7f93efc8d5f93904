"""Every change of which version serves a model: journal first, then memory.

:class:`Switcher` is the one place the device changes what a model's name answers with:

``switch``    to a version the installer prepared in the inactive slot (it goes on probation when it replaces one);
``rollback``  to the previous slot, whose session the health monitor kept loaded, when the verdict is Unhealthy;
``confirm``   probation passed: the previous slot is no longer needed as a rollback target;
``recover``   at start-up: serve what the journal names after re-verifying it, fall back to the previous slot when
              the active one is damaged, and count the start if a version is on probation
              (:func:`edgefleet.core.probation.after_restart`);
``remove``    the model left the spec.

Each change is committed to the journal (:meth:`edgefleet.edge_reconciler.state.Store.update_model`, built by one
of the :class:`~edgefleet.edge_reconciler.state.ModelRecord` transitions) before it takes effect in memory, under
the device loop's lock; the crash points ``switch`` and ``rollback`` (:mod:`edgefleet.edge_reconciler.faults`) sit
between the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable

from edgefleet.api.edgedevice import DesiredModel
from edgefleet.core import convergence, health, probation
from edgefleet.edge_reconciler import faults, installer, monitor, reporting, serving, state

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RollbackRecord:
    """One automatic rollback: from which digest, why, and how long from detectable to serving the previous."""

    name: str
    digest: str
    code: str
    seconds: float


class Switcher:
    """Switches, rollbacks, confirmations, start-up recovery and removals of one device's models."""

    def __init__(
        self,
        *,
        store: state.Store,
        registry: serving.Registry,
        installer: installer.Installer,
        monitor: monitor.HealthMonitor,
        reporter: reporting.StatusReporter,
        lock: asyncio.Lock,
        wake: asyncio.Event,
        clock: Callable[[], float],
        wall: Callable[[], dt.datetime],
    ) -> None:
        self.store = store
        self.registry = registry
        self.installer = installer
        self.monitor = monitor
        self.reporter = reporter
        self.lock = lock
        self.wake = wake
        self.clock = clock
        self.wall = wall
        self.rollbacks: list[RollbackRecord] = []

    async def load_slot(self, name: str, slot: state.SlotName) -> serving.Loaded:
        """Re-verify a slot's bundle and open it (see :meth:`installer.Installer.load_slot`)."""
        return await self.installer.load_slot(name, slot, self.store.journal.health_spec(name))

    # --- start and stop ------------------------------------------------------------------------------------------

    async def recover(self) -> None:
        """Serve what the journal names, after re-verifying it; finish nothing half-done (it is redone)."""
        self.store.collect_garbage()
        for name, rec in list(self.store.journal.models.items()):
            rec = self._count_restart(rec)
            if rec.active is None:
                continue
            order = [rec.active] + ([rec.previous] if rec.previous else [])
            for slot in order:
                try:
                    loaded = await self.load_slot(name, slot)
                except Exception as exc:
                    log.error("Discarded damaged slot model=%s slot=%s error=%s", name, slot, exc)
                    rec = self.store.model(name)
                    self.store.update_model(rec.without_slot(slot))
                    continue
                if slot != rec.active:
                    # The active slot was damaged: the verified previous one becomes active.
                    self.store.update_model(self.store.model(name).serving(slot))
                self.registry.swap(loaded, kind="recover")
                self.reporter.phase(name, "Active", f"serving version {loaded.version} after restart")
                break
            rec = self.store.model(name)
            if rec.probation_since is not None and rec.previous is not None:
                # Samples died with the process: probation starts over, with the rollback target warm again.
                self.monitor.begin(name, self.clock())
                with contextlib.suppress(Exception):
                    self.monitor.keep_warm(name, await self.load_slot(name, rec.previous))
            elif rec.probation_since is not None:
                self.store.update_model(rec.off_probation())
        self.registry.ready = True

    def _count_restart(self, rec: state.ModelRecord) -> state.ModelRecord:
        """A version that keeps taking the agent down while on probation is rolled back before it is loaded."""
        bad, previous = rec.active_slot, rec.previous
        if rec.probation_since is None or bad is None or previous is None:
            return rec
        restart = probation.after_restart(rec.probation_restarts, bad.version)
        if restart.rollback is None:
            rec = rec.with_restarts(restart.restarts)
            self.store.update_model(rec)
            return rec
        rec = rec.rolled_back(restart.rollback.message(bad.version)).with_restarts(0)
        self.store.update_model(rec)
        log.warning(
            "Rolled back model=%s from=%s reason=%s restarts=%d",
            rec.name, bad.version, restart.rollback.code, restart.restarts,
        )  # fmt: skip
        return rec

    def clean_shutdown(self) -> None:
        """Record a clean stop: probation restarts only count crashes."""
        for rec in list(self.store.journal.models.values()):
            if rec.probation_restarts:
                self.store.update_model(rec.with_restarts(0))

    # --- convergence ---------------------------------------------------------------------------------------------

    async def switch(self, desired: DesiredModel, prepared: installer.Prepared) -> None:
        """Serve ``prepared`` for ``desired``, unless the spec moved on meanwhile (then the install is abandoned)."""
        name, digest = desired.name, desired.artifact.digest
        if not convergence.still_desired(self.store.journal.spec.models, name, digest, self.wall()):
            self.installer.abandon(desired)
            self.wake.set()
            return
        async with self.lock:
            rec = self.store.model(name)
            had_active = rec.active is not None and rec.active_slot is not None
            since = self.wall().timestamp() if had_active else None
            self.store.update_model(rec.switched(prepared.slot, prepared.record, since))
            faults.reached("switch")
            old = self.registry.swap(prepared.loaded)
            if had_active and old is not None:
                self.monitor.begin(name, self.clock(), fallback=old)
        self.installer.finished(desired)
        self.store.collect_garbage()
        self.reporter.phase(name, "Active", f"switched to version {desired.version}")
        log.info("Switched model model=%s version=%s digest=%s slot=%s", name, desired.version, digest, prepared.slot)

    async def remove(self, name: str) -> None:
        """Unload a model that left the spec and delete its files."""
        async with self.lock:
            self.registry.remove(name)
            self.monitor.end(name)
            self.store.drop_model(name)
            self.reporter.forget(name)
            self.monitor.forget(name)
        self.reporter.changed()
        log.info("Removed model model=%s", name)

    # --- end of probation ----------------------------------------------------------------------------------------

    async def rollback(self, name: str, verdict: health.HealthVerdict, detected_at: float) -> None:
        """Switch back to the previous slot; the failed digest is not reinstalled until the spec changes."""
        async with self.lock:
            rec = self.store.model(name)
            bad, previous = rec.active_slot, rec.previous
            if bad is None or previous is None:
                return
            target = self.monitor.fallback.get(name)
            if target is None:
                target = await self.load_slot(name, previous)
            why = probation.unhealthy(verdict)
            message = why.message(bad.version, target.version)
            self.store.update_model(rec.rolled_back(message))
            faults.reached("rollback")
            self.registry.swap(target, kind="rollback")
            elapsed = self.clock() - detected_at
            self.monitor.end(name)
        self.rollbacks.append(RollbackRecord(name, bad.digest, why.code, elapsed))
        self.monitor.verdicts[name] = verdict
        self.reporter.phase(name, "RolledBack", message)
        log.warning(
            "Rolled back model=%s from=%s to=%s reason=%s seconds=%.4f",
            name, bad.version, target.version, verdict.code, elapsed,
        )  # fmt: skip
        self.wake.set()

    async def confirm(self, rec: state.ModelRecord) -> None:
        """``rec``'s version passed probation: its rollback target is released and later versions may install."""
        name = rec.name
        async with self.lock:
            confirmed = rec.off_probation()
            try:
                self.store.update_model(confirmed)
            except OSError as exc:
                # Safe to keep in memory only: after a power cut before a later commit, probation simply runs
                # again. Not confirming would hold every later version back.
                self.store.remember(self.store.journal.with_model(confirmed))
                log.error("Could not persist the passed probation model=%s error=%s", name, exc)
            self.monitor.end(name)
        version = rec.active_slot.version if rec.active_slot else "?"
        self.reporter.phase(name, "Active", f"version {version} passed probation")
        self.wake.set()


__all__ = ["RollbackRecord", "Switcher"]
