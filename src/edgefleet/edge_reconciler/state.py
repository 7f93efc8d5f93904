"""The device's A/B state store and install journal.

Layout under the state directory (a hostPath on KubeEdge nodes, ``/var/lib/edgefleet`` under systemd)::

    journal.json                  the journal: every install state, committed atomically
    downloads/<hex>.part          a download in progress (resumed with an HTTP Range request)
    slots/<model>/a.bundle        slot A: a whole verified bundle (digest + signature re-checked at every load)
    slots/<model>/b.bundle        slot B

Crash safety rests on two rules. (1) Every file is written to ``*.tmp``, fsynced, renamed over its final name and
the directory fsynced, so a name only ever points at complete content. (2) ``journal.json`` is the single commit
point: a slot is only *active* once the journal says so, and the journal only names slots whose bundle was fully
written before. After a power cut the device loads what the journal names, re-verifies it with
:func:`edgefleet.adapters.bundle.open_bundle` and resumes whatever install was in flight; leftovers (``*.tmp``,
unreferenced slots and downloads) are deleted by :meth:`Store.collect_garbage`.

The records are frozen; every change of a model's record is one of the pure transitions of :class:`ModelRecord`
(``switched``, ``rolled_back``, ``rejecting`` ...), built in that one place and committed by the caller.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgefleet.api.edgedevice import DesiredModel, EdgeDeviceSpec
from edgefleet.api.modeldeployment import HealthSpec
from edgefleet.core import convergence

log = logging.getLogger(__name__)

SlotName = Literal["a", "b"]
InstallStep = Literal["downloading", "verifying", "installing", "testing", "switching"]
RejectedAs = Literal["RolledBack", "Failed"]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SlotRecord(_Record):
    """A complete, verified bundle in one slot."""

    digest: str
    version: str
    revision: str


class InstallRecord(_Record):
    """An install in flight (the crash-recovery breadcrumb)."""

    digest: str
    step: InstallStep
    slot: SlotName


class StagedRecord(_Record):
    """A later version verified into the inactive slot ahead of activation (``rollout.prestage``). The slot is not
    a rollback target: :attr:`ModelRecord.slots` stops naming it before its file is written."""

    digest: str
    version: str
    revision: str
    slot: SlotName


class ModelRecord(_Record):
    """Everything the device knows about one model name."""

    name: str
    active: SlotName | None = None
    slots: dict[SlotName, SlotRecord] = Field(default_factory=dict)
    desired: DesiredModel | None = None  # spec entry the active slot was installed for (health thresholds)
    probation_since: float | None = None  # wall-clock seconds; None once confirmed
    probation_restarts: int = 0  # unclean restarts while on probation (a crash loop is a health signal)
    rejected: dict[str, str] = Field(default_factory=dict)  # digest -> "RolledBack" | "Failed"
    rejected_reason: dict[str, str] = Field(default_factory=dict)  # digest -> why, for status
    install: InstallRecord | None = None
    staged: StagedRecord | None = None

    @property
    def active_slot(self) -> SlotRecord | None:
        """The serving slot's record."""
        return self.slots.get(self.active) if self.active else None

    @property
    def previous(self) -> SlotName | None:
        """The other slot, if it holds a verified bundle."""
        other: SlotName = "b" if self.active == "a" else "a"
        return other if other in self.slots and self.active is not None else None

    @property
    def inactive(self) -> SlotName:
        """Where the next install goes."""
        return "b" if self.active == "a" else "a"

    # --- transitions (pure): the one place each change of a record is built --------------------------------------

    def rejecting(self, digest: str, as_: RejectedAs, message: str) -> ModelRecord:
        """``digest`` refused until the desired digest changes, with the sentence status shows for it."""
        rejected, reasons = self.rejected | {digest: as_}, self.rejected_reason | {digest: message}
        return self.model_copy(update={"rejected": rejected, "rejected_reason": reasons})

    def switched(self, slot: SlotName, record: SlotRecord, probation_since: float | None) -> ModelRecord:
        """``record`` serves from ``slot``; the install that prepared it is over."""
        return self.model_copy(
            update={
                "slots": self.slots | {slot: record},
                "active": slot,
                "probation_since": probation_since,
                "install": None,
                "staged": None if self.staged is not None and self.staged.slot == slot else self.staged,
            }
        )

    def rolled_back(self, message: str) -> ModelRecord:
        """The previous slot serves again, off probation; the active digest is rejected as ``RolledBack``."""
        bad, previous = self.active_slot, self.previous
        if bad is None or previous is None:
            raise ValueError(f"model {self.name} has no previous slot to roll back to")
        rejected = self.rejecting(bad.digest, "RolledBack", message)
        return rejected.model_copy(update={"active": previous, "probation_since": None})

    def off_probation(self) -> ModelRecord:
        """Probation is over (passed, or impossible without a rollback target)."""
        return self.model_copy(update={"probation_since": None})

    def with_restarts(self, restarts: int) -> ModelRecord:
        """The count of agent starts during this probation."""
        return self.model_copy(update={"probation_restarts": restarts})

    def serving(self, slot: SlotName) -> ModelRecord:
        """``slot`` serves because the active one was found damaged at start-up (off probation: no fallback left)."""
        return self.model_copy(update={"active": slot, "probation_since": None})

    def without_slot(self, slot: SlotName) -> ModelRecord:
        """``slot`` forgotten (its bundle was damaged); nothing is active if it was the active one."""
        slots = {k: v for k, v in self.slots.items() if k != slot}
        return self.model_copy(update={"slots": slots, "active": self.active if self.active != slot else None})


class Journal(_Record):
    """The whole device state: last spec seen (so an offline restart keeps converging) and every model."""

    schema_version: int = 1
    spec: EdgeDeviceSpec = Field(default_factory=EdgeDeviceSpec)
    observed_generation: int | None = None
    models: dict[str, ModelRecord] = Field(default_factory=dict)

    def desired(self, name: str) -> DesiredModel | None:
        """The spec's entry for ``name``."""
        return next((m for m in self.spec.models if m.name == name), None)

    def health_spec(self, name: str) -> HealthSpec:
        """The health thresholds the spec sets for ``name`` (the defaults once it left the spec)."""
        desired = self.desired(name)
        return desired.health if desired is not None else HealthSpec()

    def with_spec(self, spec: EdgeDeviceSpec, generation: int | None) -> Journal:
        """The journal after the desired spec ``spec`` of ``generation`` was observed."""
        return self.model_copy(update={"spec": spec, "observed_generation": generation})

    def with_model(self, record: ModelRecord) -> Journal:
        """The journal with ``record`` in place of the model's old record."""
        return self.model_copy(update={"models": {**self.models, record.name: record}})

    def without_model(self, name: str) -> Journal:
        """The journal without the model ``name``."""
        return self.model_copy(update={"models": {k: v for k, v in self.models.items() if k != name}})

    def view(self) -> dict[str, convergence.Installed]:
        """The convergence planner's view of the installed models (pure)."""
        out = {}
        for name, rec in self.models.items():
            active = rec.active_slot
            prev = rec.slots.get(rec.previous) if rec.previous else None
            out[name] = convergence.Installed(
                name=name,
                active_digest=active.digest if active else None,
                previous_digest=prev.digest if prev else None,
                rejected=dict(rec.rejected),
                on_probation=rec.probation_since is not None,
            )
        return out


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, midway: Callable[[], None] | None = None) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either the old or the new content, never a mix.

    ``midway`` runs after half the bytes were written (the ``install`` crash point).
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            half = len(data) // 2
            fh.write(data[:half])
            if midway is not None:
                fh.flush()
                midway()
            fh.write(data[half:])
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        # A full disk (ENOSPC) or an I/O error: give the space of the partial copy back; ``path`` is untouched.
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


class Store:
    """The state directory. Not thread-safe: the device loop owns it (one asyncio task at a time mutates it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.downloads = root / "downloads"
        self.slots = root / "slots"
        for d in (root, self.downloads, self.slots):
            d.mkdir(parents=True, exist_ok=True)
        self.journal_path = root / "journal.json"
        self.damaged: str | None = None
        self.journal = self._load()

    def _load(self) -> Journal:
        try:
            raw = self.journal_path.read_bytes()
        except FileNotFoundError:
            return Journal()
        # The journal is only ever replaced atomically, so a parse error means outside damage. Refusing to start
        # would crash-loop the device; guessing would serve something unverified. So the damaged file is kept for a
        # person to look at and the device starts from nothing: it downloads and verifies its desired models again.
        try:
            return Journal.model_validate_json(raw)
        except ValidationError as exc:
            aside = self.journal_path.with_name(f"journal.damaged-{int(time.time())}.json")
            os.replace(self.journal_path, aside)
            self.damaged = (
                f"{self.journal_path}: the install journal was damaged ({exc.error_count()} errors, first: "
                f"{exc.errors(include_url=False, include_input=False)[0]['msg']}); moved to {aside.name}, "
                "starting fresh (the device downloads its desired models again)"
            )
            log.error("Reset damaged journal path=%s moved_to=%s", self.journal_path, aside.name)
            return Journal()

    def commit(self, journal: Journal) -> None:
        """Make ``journal`` the durable state (atomic replace + fsync)."""
        write_atomic(self.journal_path, journal.model_dump_json(by_alias=False).encode())
        self.journal = journal

    def remember(self, journal: Journal) -> None:
        """Adopt ``journal`` in memory only, after :meth:`commit` failed (a full disk). Only for changes that are
        safe to lose in a power cut: the next commit that succeeds persists them."""
        self.journal = journal

    def update_model(self, record: ModelRecord) -> None:
        """Commit one model's record."""
        self.commit(self.journal.with_model(record))

    def drop_model(self, name: str) -> None:
        """Forget a model entirely (after it was unloaded) and delete its slots."""
        self.commit(self.journal.without_model(name))
        directory = self.slots / name
        if directory.is_dir():
            for f in directory.iterdir():
                f.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                directory.rmdir()

    def model(self, name: str) -> ModelRecord:
        """The record of ``name`` (an empty one if unknown)."""
        return self.journal.models.get(name) or ModelRecord(name=name)

    def slot_path(self, name: str, slot: SlotName) -> Path:
        """File of one slot; ``name`` is a DNS label from a validated spec, so it cannot traverse."""
        directory = self.slots / name
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f"{slot}.bundle"

    def part_path(self, digest: str) -> Path:
        """Where the download of ``digest`` (``sha256:<hex>``, validated) accumulates."""
        return self.downloads / (digest.split(":", 1)[1] + ".part")

    def collect_garbage(self) -> list[Path]:
        """Delete temporary files, downloads not in flight and slot files the journal does not name."""
        removed: list[Path] = []
        in_flight = {self.part_path(r.install.digest) for r in self.journal.models.values() if r.install}
        layers = {p.name + "." for p in in_flight}  # the layer blobs of an OCI download in flight
        for f in self.downloads.iterdir():
            if f not in in_flight and not any(f.name.startswith(prefix) for prefix in layers):
                f.unlink(missing_ok=True)
                removed.append(f)
        for directory in self.slots.iterdir():
            rec = self.journal.models.get(directory.name)
            keep = {f"{s}.bundle" for s in rec.slots} if rec else set()
            if rec is not None and rec.staged is not None:
                keep.add(f"{rec.staged.slot}.bundle")
            for f in directory.iterdir():
                if f.name not in keep:
                    f.unlink(missing_ok=True)
                    removed.append(f)
            if rec is None:
                with contextlib.suppress(OSError):
                    directory.rmdir()
        return removed


__all__ = [
    "InstallRecord",
    "InstallStep",
    "Journal",
    "ModelRecord",
    "RejectedAs",
    "SlotName",
    "SlotRecord",
    "StagedRecord",
    "Store",
    "write_atomic",
]
