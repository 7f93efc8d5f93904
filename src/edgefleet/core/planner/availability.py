"""Availability: how many devices may be off what they run at once, and which changes wait for a maintenance window.

A device is *unavailable* while its desired revision differs from the one it reports active (it is downloading,
installing or switching). A change that makes an available device unavailable is *costly*: it is made only while fewer
than ``maxUnavailable`` reachable targeted devices are unavailable (an offline device is not unavailable because of the
rollout), and only inside a maintenance window. A change that makes a
device available (returning a device that rolled itself back to stable, for example) is free and always allowed, and
it gives its unit of budget back.

:class:`Ledger` holds the desired entry of every device during one planning pass, so that later decisions of the pass
see earlier ones, and the budget that is left. It is the only mutable object of a pass; it starts from what the
devices have and ends as the pass's :class:`~edgefleet.core.planner.devices.DeviceChange` s.

Worked example: 20 devices, ``maxUnavailable: 25%`` (5), 3 devices still installing: 2 more costly switches are
allowed in this pass; when one of the 3 reports its revision active, the next pass has 3.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence

from edgefleet.api import edgedevice
from edgefleet.core import canary
from edgefleet.core.planner import devices

Proposal = tuple[devices.DeviceView, edgedevice.DesiredModel | None]
"""A device and the entry a pass would like it to have."""


def resolve_max_unavailable(value: int | str, total: int) -> int:
    """``maxUnavailable`` as a device count: percentages round down, and the result is at least 1 (pure).

    Devices have no surge capacity, so 0 would mean no device can ever switch; 1 keeps rollouts possible on small fleets
    (25 % of 3 devices).

    >>> [resolve_max_unavailable(v, 20) for v in (3, "25%", "1%", 0)]
    [3, 5, 1, 1]
    """
    count = total * int(value[:-1]) // 100 if isinstance(value, str) else value
    return max(1, count)


def same(a: edgedevice.DesiredModel | None, b: edgedevice.DesiredModel | None) -> bool:
    """Both ask for the same thing (or both for nothing), whatever their validity stamps say (pure)."""
    return (a is None and b is None) or (a is not None and a.same_target(b))


class Ledger:
    """The desired entry of every device during one planning pass and the availability budget left.

    Only reachable devices count towards ``maxUnavailable`` (an offline device is not unavailable because of the
    rollout), and an unreachable device is only ever given the entry of what it already runs (a *release*: it will not
    start a change on its own when it returns), none, or, when the pass moves devices back rather than forward, the
    stable entry in place of another one if it runs nothing. A device that did not pick up its entry keeps it while the
    rollout moves forward (``forward=True``), so the same change is not offered to it again and again. Every
    entry the ledger sets carries a fresh validity (``validity_seconds`` from ``now``); :meth:`refresh` renews the
    validity of current entries before it runs out.

    >>> def device(name, active):
    ...     return devices.DeviceView(name, {}, True, False, None,
    ...                               edgedevice.ModelStatus(name="m", state="Active", active_revision=active),
    ...                               False, True)
    >>> a, b = device("a", "r1"), device("b", "r1")
    >>> ledger = Ledger([a, b], limit=1, window_open=True)
    >>> new = edgedevice.DesiredModel.model_validate({"name": "m", "deployment": "d", "version": "2.0.0",
    ...     "revision": "r2", "artifact": {"uri": "http://s/x", "digest": "sha256:" + "0" * 64, "sizeBytes": 1,
    ...                  "precision": "fp32"}})
    >>> ledger.switch(a, new), ledger.switch(b, new)  # the second would make two devices unavailable
    (True, False)
    >>> [(c.device, c.desired.revision if c.desired else None) for c in ledger.changes([a, b])]
    [('a', 'r2')]
    """

    def __init__(
        self,
        views: Sequence[devices.DeviceView],
        limit: int,
        window_open: bool,
        now: dt.datetime | None = None,
        validity_seconds: float | None = None,
    ) -> None:
        self._entries = {d.name: d.original for d in views}
        self.budget = limit - sum(d.unavailable(d.original) for d in views if d.targeted and d.reachable)
        self.window_open = window_open
        self.blocked_by_window = False
        """A costly change waited for a maintenance window in this pass."""
        self.now = now.replace(microsecond=0) if now is not None else None
        self.validity_seconds = validity_seconds

    def entry(self, device: devices.DeviceView) -> edgedevice.DesiredModel | None:
        """The entry ``device`` has after the changes made so far in this pass."""
        return self._entries[device.name]

    def switch(
        self, device: devices.DeviceView, desired: edgedevice.DesiredModel | None, *, forward: bool = False
    ) -> bool:
        """Move ``device`` to ``desired`` if availability, maintenance windows and reachability allow; True when it is
        there. An entry asking for what the device already has is kept as it is (with its validity)."""
        current = self._entries[device.name]
        if same(desired, current):
            return True
        if not device.reachable and desired is not None:
            # Never a change an offline device would start on its own when it returns; moving back (not forward), a
            # device that runs nothing may have another entry replaced by this one (the stable one).
            runs_nothing = device.active is None and current is not None and not forward
            if desired.revision != device.active and not runs_nothing:
                return False
            if device.stuck and forward:
                return False
        counted = device.targeted and device.reachable
        costly = counted and device.unavailable(desired) and not device.unavailable(current)
        if costly:
            if not self.window_open:
                self.blocked_by_window = True
                return False
            if self.budget <= 0:
                return False
            self.budget -= 1
        elif counted and device.unavailable(current) and not device.unavailable(desired):
            self.budget += 1  # the device becomes available: the budget is "limit minus unavailable devices"
        self._entries[device.name] = self._stamped(desired, None)
        return True

    def _stamped(
        self, desired: edgedevice.DesiredModel | None, assigned: dt.datetime | None
    ) -> edgedevice.DesiredModel | None:
        """``desired`` with a validity from now (assigned now unless ``assigned`` says otherwise)."""
        if desired is None or self.now is None or self.validity_seconds is None:
            return desired
        validity = edgedevice.DesiredValidity(
            assigned_at=assigned or self.now, expires_at=self.now + dt.timedelta(seconds=self.validity_seconds)
        )
        return desired.model_copy(update={"validity": validity})

    def refresh(self, views: Iterable[devices.DeviceView], current: Collection[str]) -> None:
        """Renew the validity of the entries of reachable targeted devices whose revision is in ``current`` (the
        stable and the canary revision) once less than half of it is left; each device at its own point between
        one half and one quarter left (a hash of its name), so entries written together are not refreshed together.

        A refresh keeps ``assignedAt``. Entries of unreachable devices, and entries that are no longer current, are
        left to expire: a device that returns after longer than the validity must hear from the operator before it
        installs anything.
        """
        if self.now is None or self.validity_seconds is None:
            return
        for device in views:
            entry = self._entries[device.name]
            if entry is None or not device.targeted or not device.reachable or entry.revision not in current:
                continue
            if entry.validity is not None:
                spread = canary.stable_hash("validity", device.name) / 2**64
                threshold = self.validity_seconds * (0.5 - 0.25 * spread)
                if (entry.validity.expires_at - self.now).total_seconds() > threshold:
                    continue
            assigned = entry.validity.assigned_at if entry.validity is not None else None
            self._entries[device.name] = self._stamped(entry, assigned)

    def converge(self, proposals: Iterable[Proposal], *, forward: bool = False) -> None:
        """Switch each device to its proposed entry, free changes first so they never wait for budget."""
        ordered = sorted(proposals, key=lambda p: (self._costs(p), p[0].name))
        for device, desired in ordered:
            self.switch(device, desired, forward=forward)

    def _costs(self, proposal: Proposal) -> bool:
        device, desired = proposal
        return device.reachable and device.unavailable(desired) and not device.unavailable(self._entries[device.name])

    def release_untargeted(self, views: Iterable[devices.DeviceView]) -> None:
        """Remove this deployment's entry from devices the selector no longer matches (never costly)."""
        for device in views:
            if not device.targeted and not device.foreign and self._entries[device.name] is not None:
                self.switch(device, None)

    def on(self, revision: str | None, views: Iterable[devices.DeviceView]) -> list[devices.DeviceView]:
        """The devices of ``views`` whose entry is ``revision`` (the *updated* devices of a rollout)."""
        return [d for d in views if (e := self._entries[d.name]) is not None and e.revision == revision]

    def converged(self, device: devices.DeviceView, revision: str) -> bool:
        """``device`` is asked to run ``revision`` and runs it."""
        return device.converged(self._entries[device.name], revision)

    def snapshot(self) -> tuple[dict[str, edgedevice.DesiredModel | None], int]:
        """The entries and budget now, to :meth:`restore` when a pass abandons its moves."""
        return dict(self._entries), self.budget

    def restore(self, snapshot: tuple[dict[str, edgedevice.DesiredModel | None], int]) -> None:
        """Undo the moves made since ``snapshot``."""
        self._entries, self.budget = dict(snapshot[0]), snapshot[1]

    def changes(self, views: Iterable[devices.DeviceView]) -> tuple[devices.DeviceChange, ...]:
        """The writes this pass needs: every device whose entry changed, or that needs a rewrite."""
        return tuple(
            devices.DeviceChange(d.name, self._entries[d.name])
            for d in views
            if self._entries[d.name] != d.original or d.dirty
        )


__all__ = ["Ledger", "Proposal", "resolve_max_unavailable", "same"]
