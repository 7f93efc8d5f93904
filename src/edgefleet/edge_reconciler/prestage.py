"""Downloads ahead of activation (``rollout.prestage``): a later revision into the inactive slot while the active one
keeps serving.

The operator names the canary revision in a device's desired entry (``spec.models[].prestage``) before the step that
switches the device; the :class:`Stager` downloads it (mirrors first, then the origin; paced by
``maxBytesPerSecond``), verifies it exactly as an install does (digest, ed25519 signature, model name and version) and
writes it into the inactive slot, recorded as ``staged`` in the journal (:class:`edgefleet.edge_reconciler.state.
StagedRecord`, reported as ``status.models[].stagedDigest``). Nothing is switched: when the desired entry itself
names the staged digest, the installer finds it in the slot, verifies it again and only runs the golden samples
(:meth:`edgefleet.edge_reconciler.installer.Installer.prepare`), so activation no longer waits for the download.

Rules (:func:`decide`, pure):

* only while the model is in sync and off probation (the inactive slot is then no rollback target), and never for a
  digest this device rejected;
* one download ahead at a time per device; an install always goes first (the stager is stopped and the partial
  download is resumed by the install, which uses the same file);
* when the entry no longer names the staged digest (the revision was aborted or superseded), the staged bytes are
  dropped: the slot file is deleted and the journal forgets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Literal

from edgefleet.api.edgedevice import DesiredModel
from edgefleet.core import convergence
from edgefleet.core.errors import EdgefleetError, IntegrityError, InvalidSpecError, TransientError
from edgefleet.edge_reconciler import installer, reporting, state

log = logging.getLogger(__name__)
Decision = Literal["stage", "keep", "drop", "wait", "idle"]
WAIT_SECONDS = 1.0
"""How soon to look again while a download ahead waits for probation or an install to end."""


def decide(entry: DesiredModel | None, record: state.ModelRecord, step: convergence.StepKind | None) -> Decision:
    """What to do about the download ahead of ``entry`` (pure).

    >>> from edgefleet.api.edgedevice import ArtifactRef
    >>> def ref(d: str) -> ArtifactRef:
    ...     return ArtifactRef(uri="http://s/a", digest="sha256:" + d * 64, size_bytes=1, precision="fp32")
    >>> entry = DesiredModel.model_validate({"name": "m", "deployment": "m", "version": "1.0.0", "revision": "r1",
    ...     "artifact": ref("1").to_wire(), "prestage": {"version": "2.0.0", "revision": "r2",
    ...     "artifact": ref("2").to_wire()}})
    >>> decide(entry, state.ModelRecord(name="m"), "in-sync"), decide(entry, state.ModelRecord(name="m"), "install")
    ('stage', 'wait')
    >>> staged = state.StagedRecord(digest="sha256:" + "2" * 64, version="2.0.0", revision="r2", slot="b")
    >>> decide(entry, state.ModelRecord(name="m", staged=staged), "in-sync")
    'keep'
    >>> decide(entry.model_copy(update={"prestage": None}), state.ModelRecord(name="m", staged=staged), "in-sync")
    'drop'
    """
    staged = record.staged
    ahead = entry.prestage if entry is not None else None
    if entry is None or ahead is None or ahead.artifact.digest == entry.artifact.digest:
        keep_for_install = entry is not None and staged is not None and staged.digest == entry.artifact.digest
        return "drop" if staged is not None and not keep_for_install else "idle"
    if staged is not None:
        return "keep" if staged.digest == ahead.artifact.digest else "drop"
    if ahead.artifact.digest in record.rejected:
        return "idle"
    if step != "in-sync" or record.probation_since is not None:
        return "wait"
    return "stage"


class Stager:
    """One device's downloads ahead of activation (see the module docstring)."""

    def __init__(
        self,
        *,
        store: state.Store,
        installer: installer.Installer,
        reporter: reporting.StatusReporter,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.installer = installer
        self.reporter = reporter
        self.clock = clock
        self.task: asyncio.Task[None] | None = None
        self.digest: str | None = None
        self.backoff: dict[str, tuple[int, float]] = {}

    async def reconcile(self, plan: convergence.ConvergencePlan) -> float | None:
        """Start, keep or drop the download ahead of each desired model; returns when to look again."""
        requeue: float | None = None
        wanted: str | None = None
        for step in plan.steps:
            entry = step.desired
            record = self.store.model(step.name)
            decision = decide(entry, record, step.kind)
            if decision == "drop":
                await self.stop()
                self._drop(record)
            elif decision == "wait":
                requeue = WAIT_SECONDS if requeue is None else min(requeue, WAIT_SECONDS)
            elif decision == "stage" and entry is not None and entry.prestage is not None:
                digest = entry.prestage.artifact.digest
                wait = self._retry_in(digest)
                if wait > 0:
                    requeue = wait if requeue is None else min(requeue, wait)
                elif wanted is None:
                    wanted = digest
                    if self.digest != digest or self.task is None or self.task.done():
                        await self.stop()
                        self.digest = digest
                        self.task = asyncio.create_task(self._stage(entry), name=f"prestage {step.name}")
        if wanted is None:
            await self.stop()
        return requeue

    async def stop(self) -> None:
        """Cancel a download ahead (an install goes first; its partial file is resumed by whoever needs it)."""
        task, self.task, self.digest = self.task, None, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _retry_in(self, digest: str) -> float:
        _, at = self.backoff.get(digest, (0, 0.0))
        return max(0.0, at - self.clock())

    def _later(self, digest: str, long: bool = False) -> float:
        attempts, _ = self.backoff.get(digest, (0, 0.0))
        delay = (
            self.installer.retry_max
            if long
            else min(self.installer.retry_initial * 2**attempts, self.installer.retry_max)
        )
        self.backoff[digest] = (attempts + 1, self.clock() + delay)
        return delay

    def _drop(self, record: state.ModelRecord) -> None:
        staged = record.staged
        if staged is None:
            return
        self.store.update_model(record.model_copy(update={"staged": None}))
        self.store.slot_path(record.name, staged.slot).unlink(missing_ok=True)
        self.store.part_path(staged.digest).unlink(missing_ok=True)
        self.reporter.changed()
        log.info("Dropped staged version model=%s version=%s digest=%s", record.name, staged.version, staged.digest)

    def _note(self, entry: DesiredModel, message: str) -> None:
        active = self.store.model(entry.name).active_slot
        serving = f"serving version {active.version}" if active is not None else "serving nothing"
        self.reporter.phase(entry.name, "Active", f"{serving}; {message}")

    async def _stage(self, entry: DesiredModel) -> None:
        ahead = entry.prestage
        assert ahead is not None
        name, digest, art = entry.name, ahead.artifact.digest, ahead.artifact
        if art.size_bytes > self.installer.max_bundle_bytes:
            self._later(digest, long=True)
            self._note(entry, f"version {ahead.version} is over maxBundleBytes; not staged")
            return
        part = self.store.part_path(digest)
        self._note(entry, f"downloading version {ahead.version} ahead of activation")
        try:
            fetched = await self.installer.fetch(
                art.uri, part, art.size_bytes, digest=digest, max_bytes_per_second=ahead.max_bytes_per_second
            )
            data: bytes = await asyncio.to_thread(self.installer.read_file, part)
            await self.installer.verify(name, ahead.version, digest, data)
        except TransientError as exc:
            delay = self._later(digest)
            self._note(entry, f"staging version {ahead.version} postponed: {exc} (retry in {delay:.1f}s)")
            return
        except (InvalidSpecError, IntegrityError) as exc:
            # Not a rejection: the install of this digest, if a step asks for it, decides and reports.
            part.unlink(missing_ok=True)
            delay = self._later(digest, long=True)
            self._note(entry, f"staging version {ahead.version} failed: {exc} (retry in {delay:.0f}s)")
            log.warning("Failed to stage model=%s digest=%s error=%s", name, digest, exc)
            return
        except (OSError, EdgefleetError) as exc:
            self._later(digest)
            log.warning("Failed to stage model=%s digest=%s error=%s", name, digest, exc)
            return
        record = self.store.model(name)
        if record.install is not None or record.probation_since is not None:
            return  # an install or a switch happened meanwhile; try again on a later pass
        slot = record.inactive
        # The inactive slot is about to be overwritten: stop naming it before its file changes (as an install does).
        slots = {k: v for k, v in record.slots.items() if k != slot}
        self.store.update_model(record.model_copy(update={"slots": slots, "staged": None}))
        path = self.store.slot_path(name, slot)
        await asyncio.to_thread(self.installer.write_slot, path, data, part)
        staged = state.StagedRecord(digest=digest, version=ahead.version, revision=ahead.revision, slot=slot)
        self.store.update_model(self.store.model(name).model_copy(update={"staged": staged}))
        part.unlink(missing_ok=True)
        self.backoff.pop(digest, None)
        self.installer.report_download(name, fetched)
        self._note(entry, f"version {ahead.version} staged in slot {slot}")
        log.info("Staged version model=%s version=%s digest=%s slot=%s", name, ahead.version, digest, slot)


__all__ = ["Decision", "Stager", "decide"]
