"""Preparing one desired model version in the inactive A/B slot, every step journaled before it happens.

:meth:`Installer.prepare` runs the pipeline up to the point where switching is a pointer swap:

1. ``downloading``: fetch into ``downloads/<digest>.part`` (resumed with ``Range``; cut off above ``sizeBytes``;
   bigger than ``maxBundleBytes`` is refused before any byte is fetched).
2. ``verifying``: sha256 digest, bundle structure and the ed25519 signature against the trust keys
   (:func:`edgefleet.adapters.bundle.open_bundle`), and the manifest must name the model and version the spec asks
   for.
3. ``installing``: the journal stops naming the inactive slot, then the bundle is written there atomically.
4. smoke test: the model is opened in onnxruntime and the manifest's golden samples must reproduce.

Transient failures (network, server errors) are retried with exponential backoff; anything else rejects the digest
(``Failed``) until the desired digest changes. The caller (:mod:`edgefleet.edge_reconciler.switching`) commits the
switch. Slow work (hashing, signature, session creation) runs on the inference pool, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import artifacts, bundle, onnx_session, protocols
from edgefleet.api.edgedevice import DesiredModel, DownloadReport
from edgefleet.api.modeldeployment import HealthSpec
from edgefleet.core.errors import IntegrityError, InvalidSpecError, Reason, TransientError
from edgefleet.edge_reconciler import faults, serving, state, telemetry

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A verified, smoke-tested version in its slot, loaded and ready to serve."""

    slot: state.SlotName
    record: state.SlotRecord
    loaded: serving.Loaded


class Installer:
    """Runs installs for the device loop; owns the retry backoff per digest.

    :class:`edgefleet.edge_reconciler.device.Agent` builds it from its settings (``installer_type``); the fleet
    simulator passes a subclass that shares onnxruntime sessions between devices (:meth:`_runtime`).
    """

    def __init__(
        self,
        *,
        store: state.Store,
        registry: serving.Registry,
        fetch: protocols.ArtifactFetch,
        trusted_keys: Sequence[ed25519.Ed25519PublicKey],
        phase: telemetry.PhaseSink,
        clock: Callable[[], float] = time.monotonic,
        max_bundle_bytes: int = 512 * 1024**2,
        retry_initial_seconds: float = 1.0,
        retry_max_seconds: float = 60.0,
        intra_op_threads: int = 1,
        downloads: Callable[[str, DownloadReport], None] | None = None,
    ) -> None:
        self.store = store
        self.downloads = downloads
        self.registry = registry
        self.fetch = fetch
        self.trusted_keys = list(trusted_keys)
        self.phase = phase
        self.clock = clock
        self.max_bundle_bytes = max_bundle_bytes
        self.retry_initial = retry_initial_seconds
        self.retry_max = retry_max_seconds
        self.intra_op_threads = intra_op_threads
        self.backoff: dict[str, tuple[int, float]] = {}  # digest -> (attempts, retry at)

    async def _offload(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.registry.executor, fn, *args)

    def _runtime(self, model: bytes) -> onnx_session.ModelRuntime:
        return onnx_session.ModelRuntime(model, intra_op_threads=self.intra_op_threads)

    # The three steps below are methods so the fleet simulator can share their work between the devices of one
    # process (one copy of a bundle in memory and on disk per digest); a device runs them as written.

    def read_file(self, path: Path) -> bytes:
        """The bytes of a downloaded bundle or a slot file."""
        return path.read_bytes()

    def open_verified(self, data: bytes, digest: str) -> bundle.Bundle:
        """:func:`edgefleet.adapters.bundle.open_bundle` against the trust keys."""
        return bundle.open_bundle(data, self.trusted_keys, digest)

    def write_slot(self, path: Path, data: bytes, source: Path | None) -> None:
        """Write a verified bundle into a slot file atomically (``source``: the file it was read from)."""
        state.write_atomic(path, data, midway=lambda: faults.reached("install"))

    async def load_slot(self, name: str, slot: state.SlotName, health: HealthSpec) -> serving.Loaded:
        """Re-verify a slot's bundle (digest + signature) and open it in onnxruntime."""
        rec = self.store.model(name).slots[slot]
        data = await self._offload(self.read_file, self.store.slot_path(name, slot))
        opened = await self._offload(self.open_verified, data, rec.digest)
        runtime = await self._offload(self._runtime, opened.model)
        return serving.Loaded(name, rec.version, rec.digest, rec.revision, runtime, health)

    def retry_in(self, desired: DesiredModel) -> float:
        """Seconds until ``desired`` may be tried again (0: now)."""
        _, retry_at = self.backoff.get(desired.artifact.digest, (0, 0.0))
        return max(0.0, retry_at - self.clock())

    def finished(self, desired: DesiredModel) -> None:
        """The version was switched to: forget its backoff."""
        self.backoff.pop(desired.artifact.digest, None)

    def abandon(self, desired: DesiredModel) -> None:
        """Drop a prepared install the spec no longer wants (its slot file is garbage-collected)."""
        self.store.update_model(self.store.model(desired.name).model_copy(update={"install": None}))
        self.store.part_path(desired.artifact.digest).unlink(missing_ok=True)
        log.info("Abandoned stale install model=%s digest=%s", desired.name, desired.artifact.digest)

    def _fail(self, desired: DesiredModel, reason: str, message: str) -> None:
        digest = desired.artifact.digest
        rejected = self.store.model(desired.name).rejecting(digest, "Failed", f"{reason}: {message}")
        staged = rejected.staged if rejected.staged is not None and rejected.staged.digest != digest else None
        self.store.update_model(rejected.model_copy(update={"install": None, "staged": staged}))
        self.store.part_path(digest).unlink(missing_ok=True)
        self.phase(desired.name, "Failed", f"{reason}: {message}")
        log.error("Rejected artifact model=%s digest=%s reason=%s message=%s", desired.name, digest, reason, message)

    def _retry_later(self, desired: DesiredModel, exc: TransientError) -> None:
        attempts, _ = self.backoff.get(desired.artifact.digest, (0, 0.0))
        delay = min(self.retry_initial * 2**attempts, self.retry_max)
        self.backoff[desired.artifact.digest] = (attempts + 1, self.clock() + delay)
        self.phase(desired.name, "Downloading", f"{exc} (retry in {delay:.1f}s)")
        log.warning("Postponed install model=%s error=%s retry_in=%.1fs", desired.name, exc, delay)

    def _journal_step(self, name: str, install: state.InstallRecord, **update: Any) -> None:
        self.store.update_model(self.store.model(name).model_copy(update={"install": install, **update}))

    def _storage_failed(self, desired: DesiredModel, exc: OSError) -> None:
        """The state directory could not be written (a full disk, an I/O error): nothing was switched, so the
        active model keeps serving. The device reports ``Failed`` with the cause and tries again with backoff,
        since space may be freed; nothing is written to the journal, which may be what cannot be written."""
        digest = desired.artifact.digest
        with contextlib.suppress(OSError):
            self.store.part_path(digest).unlink(missing_ok=True)  # give the space of the partial download back
        attempts, _ = self.backoff.get(digest, (0, 0.0))
        delay = min(self.retry_initial * 2**attempts, self.retry_max)
        self.backoff[digest] = (attempts + 1, self.clock() + delay)
        cause = exc.strerror or str(exc)
        message = (
            f"StorageError: cannot write the state directory {self.store.root} ({cause}); "
            f"free space on the device (retry in {delay:.1f}s)"
        )
        self.phase(desired.name, "Failed", message)
        log.error("Failed install model=%s digest=%s error=%s retry_in=%.1fs", desired.name, digest, cause, delay)

    async def prepare(self, desired: DesiredModel) -> Prepared | None:
        """Steps 1-4 of the module docstring; ``None`` when the version failed or must be retried later."""
        try:
            return await self._prepare(desired)
        except OSError as exc:
            self._storage_failed(desired, exc)
            return None
        except Exception as exc:
            # Whatever the artifact holds, it must not take the device down (and, journaled as in flight, down again
            # at every start): an unforeseen error rejects this digest like any failed check, and is logged as a bug.
            log.exception("Install failed unexpectedly model=%s digest=%s", desired.name, desired.artifact.digest)
            try:
                self._fail(desired, "InternalError", f"{type(exc).__name__} while installing; see the agent's log")
            except OSError as storage:
                self._storage_failed(desired, storage)
            return None

    async def _prepare(self, desired: DesiredModel) -> Prepared | None:
        name, digest, art = desired.name, desired.artifact.digest, desired.artifact
        if art.size_bytes > self.max_bundle_bytes:
            self._fail(
                desired,
                Reason.OVERSIZED,
                f"artifact is {art.size_bytes} bytes, over this device's maxBundleBytes "
                f"{self.max_bundle_bytes}; publish a smaller variant or raise the limit",
            )
            return None
        slot = self.store.model(name).inactive
        staged = self.store.model(name).staged
        if staged is not None and staged.digest == digest and staged.slot == slot:
            return await self._from_staged(desired, slot)
        self._journal_step(name, state.InstallRecord(digest=digest, step="downloading", slot=slot))
        self.phase(name, "Downloading", f"downloading version {desired.version} from {art.uri}")
        part = self.store.part_path(digest)
        cut = [False]

        def progress(have: int) -> None:
            if not cut[0] and have < art.size_bytes:
                cut[0] = True
                faults.reached("download")

        try:
            fetched = await self.fetch(art.uri, part, art.size_bytes, digest=digest, on_progress=progress)
        except TransientError as exc:
            self._retry_later(desired, exc)
            return None
        except InvalidSpecError as exc:  # the artifact cannot be used as the spec names it
            self._fail(desired, exc.reason, str(exc))
            return None
        except IntegrityError as exc:  # the origin (the last source) served bytes that do not verify
            self._fail(desired, "VerificationFailed", str(exc))
            return None
        self.report_download(name, fetched)

        self._journal_step(name, state.InstallRecord(digest=digest, step="verifying", slot=slot))
        self.phase(name, "Verifying", f"verifying digest and signature of version {desired.version}")
        data: bytes = await self._offload(self.read_file, part)
        faults.reached("verify")
        try:
            opened = await self.verify(name, desired.version, digest, data)
        except IntegrityError as exc:
            self._fail(desired, "VerificationFailed", str(exc))
            return None

        self.phase(name, "Installing", f"installing version {desired.version} into slot {slot}")
        # The inactive slot is about to be overwritten: stop naming it before its file changes.
        slots = {k: v for k, v in self.store.model(name).slots.items() if k != slot}
        install = state.InstallRecord(digest=digest, step="installing", slot=slot)
        self._journal_step(name, install, slots=slots, staged=None)
        path = self.store.slot_path(name, slot)
        await self._offload(self.write_slot, path, data, part)
        return await self._smoke_test(desired, slot, opened)

    def report_download(self, name: str, fetched: artifacts.Fetched) -> None:
        """Tell status which source served ``name`` and why the ones before it failed."""
        if self.downloads is not None:
            self.downloads(name, DownloadReport(source=fetched.source, failures=list(fetched.failures[:8])))

    async def verify(self, name: str, version: str, digest: str, data: bytes) -> bundle.Bundle:
        """Digest, structure and signature of ``data``, and the manifest names this model and version
        (IntegrityError otherwise)."""
        opened: bundle.Bundle = await self._offload(self.open_verified, data, digest)
        meta = opened.parsed.model
        if meta is None or meta.name != name or meta.version != version:
            held = f"{meta.name}@{meta.version}" if meta is not None else "no model"
            raise IntegrityError(f"manifest is {held}, spec wants {name}@{version}")
        return opened

    async def _from_staged(self, desired: DesiredModel, slot: state.SlotName) -> Prepared | None:
        """The version was downloaded and verified into ``slot`` ahead of activation: verify it again (the slot
        file is untrusted at rest, like every slot at load) and smoke-test it; nothing is downloaded."""
        name, digest = desired.name, desired.artifact.digest
        self._journal_step(name, state.InstallRecord(digest=digest, step="verifying", slot=slot))
        self.phase(name, "Verifying", f"verifying staged version {desired.version} in slot {slot}")
        data: bytes = await self._offload(self.read_file, self.store.slot_path(name, slot))
        try:
            opened = await self.verify(name, desired.version, digest, data)
        except IntegrityError as exc:
            self._fail(desired, "VerificationFailed", f"staged bundle: {exc}")
            return None
        return await self._smoke_test(desired, slot, opened)

    async def _smoke_test(self, desired: DesiredModel, slot: state.SlotName, opened: bundle.Bundle) -> Prepared | None:
        """Step 4: the golden samples reproduce in onnxruntime; the prepared version, ready to switch to."""
        name, digest = desired.name, desired.artifact.digest
        self._journal_step(name, state.InstallRecord(digest=digest, step="testing", slot=slot))
        try:
            runtime: onnx_session.ModelRuntime = await self._offload(self._runtime, opened.model)
            samples = await self._offload(bundle.golden_samples, opened)
            problem = await self._offload(runtime.check_golden, samples)
        except IntegrityError as exc:  # onnxruntime could not load the model, or the golden samples are malformed
            problem = str(exc)
        if problem is not None:
            self._fail(desired, "SmokeTestFailed", problem)
            return None
        record = state.SlotRecord(digest=digest, version=desired.version, revision=desired.revision)
        loaded = serving.Loaded(name, desired.version, digest, desired.revision, runtime, desired.health)
        return Prepared(slot, record, loaded)


__all__ = ["Installer", "Prepared"]
