"""Reachability: whether a rollout can count on a device now, from its Lease and from whether it picks up changes.

The rule, evaluated at every planning pass:

* **LeaseExpired**: the device's Lease was not renewed within its ``leaseDurationSeconds``. The renewal time is the
  operator's own observation of it (when its watch saw ``renewTime`` change; a Lease seen for the first time counts
  from ``renewTime`` but never from the future), so a device whose clock is wrong is still judged right, the way
  Kubernetes' node lifecycle controller judges node Leases.
* **NotPickedUp**: the device was given an entry more than ``rollout.pickupTimeoutSeconds`` ago
  (``validity.assignedAt``) and reports nothing for it: neither ``desiredDigest`` nor ``activeRevision`` names it.
  Its Lease may still be fresh (it died moments ago, or it renews its Lease but does not see its spec).
* Otherwise it is **reachable**. A device without a Lease (created in Git before its agent ever ran) is judged by the
  pickup rule alone.

What unreachable devices mean for a rollout (see :mod:`edgefleet.core.planner` and ``docs/rollouts.md``): they are not
counted by ``maxUnavailable`` or ``successThreshold``, their share of a step is filled by reachable devices, the
operator writes them nothing but the entry for what they already run, and more of them than ``rollout.maxUnreachable``
holds the rollout (:func:`hold`) until at most that many were unreachable for :data:`MIN_HOLD_SECONDS` in a row.

Worked example: a Lease renewed (as the operator saw it) at 10:00:00 with a 300 s duration is reachable until
10:05:00 and ``LeaseExpired`` since then; a device given a canary entry at 10:01:00 with a 120 s pickup timeout that
still reports only its stable revision at 10:03:00 is ``NotPickedUp`` since 10:03:00. Everything here is pure.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Literal

from edgefleet.api import edgedevice

Reason = Literal["LeaseExpired", "NotPickedUp"]
MIN_HOLD_SECONDS = 60.0
"""A rollout held for too many unreachable devices resumes only after enough were reachable this long in a row
(devices that flap must not make it start and stop every pass)."""


@dataclasses.dataclass(frozen=True)
class Contact:
    """A device's Lease as the operator observed it."""

    renewed_at: dt.datetime
    """When the operator saw the last renewal (see the module docstring)."""
    duration_seconds: float
    """The Lease's ``leaseDurationSeconds``."""

    @property
    def expires_at(self) -> dt.datetime:
        return self.renewed_at + dt.timedelta(seconds=self.duration_seconds)


@dataclasses.dataclass(frozen=True)
class Reachability:
    """The verdict on one device: reachable, or why not and since when."""

    reason: Reason | None = None
    since: dt.datetime | None = None

    @property
    def reachable(self) -> bool:
        return self.reason is None


REACHABLE = Reachability()


def picked_up(entry: edgedevice.DesiredModel, report: edgedevice.ModelStatus | None) -> bool:
    """The device reports something for ``entry``: it is converging to its digest, or runs its revision (pure)."""
    if report is None:
        return False
    return report.desired_digest == entry.artifact.digest or report.active_revision == entry.revision


def judge(
    entry: edgedevice.DesiredModel | None,
    report: edgedevice.ModelStatus | None,
    contact: Contact | None,
    pickup_timeout_seconds: float,
    now: dt.datetime,
) -> Reachability:
    """Whether a device with ``entry`` (this deployment's entry on it), ``report`` and ``contact`` is reachable at
    ``now`` (pure; see the module docstring).

    >>> t0 = dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)
    >>> lease = Contact(renewed_at=t0, duration_seconds=300)
    >>> judge(None, None, lease, 120, t0 + dt.timedelta(seconds=299)).reachable
    True
    >>> expired = judge(None, None, lease, 120, t0 + dt.timedelta(seconds=300))
    >>> expired.reason, expired.since.time()
    ('LeaseExpired', datetime.time(10, 5))
    """
    if contact is not None and now >= contact.expires_at:
        return Reachability("LeaseExpired", contact.expires_at)
    if entry is not None and entry.validity is not None and not picked_up(entry, report):
        due = entry.validity.assigned_at + dt.timedelta(seconds=pickup_timeout_seconds)
        if now >= due:
            return Reachability("NotPickedUp", due)
    return REACHABLE


def resolve_max_unreachable(value: int | str, total: int) -> int:
    """``maxUnreachable`` as a device count: percentages round down, and 0 means any unreachable device holds (pure).

    >>> [resolve_max_unreachable(v, 20) for v in (3, "20%", "1%", 0)]
    [3, 4, 0, 0]
    """
    return total * int(value[:-1]) // 100 if isinstance(value, str) else value


@dataclasses.dataclass(frozen=True)
class Hold:
    """Whether a rollout is held for too many unreachable devices: since when, and since when enough are back."""

    since: dt.datetime | None = None
    recovering_since: dt.datetime | None = None

    @property
    def held(self) -> bool:
        return self.since is not None


def hold(unreachable: int, limit: int, before: Hold, now: dt.datetime) -> Hold:
    """The hold after this pass (pure): a rollout is held as soon as more than ``limit`` targeted devices are
    unreachable, and resumes only after at most ``limit`` were unreachable for :data:`MIN_HOLD_SECONDS` in a row, so a
    device that keeps coming and going at the threshold keeps it held instead of starting and stopping it.

    >>> t0 = dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)
    >>> held = hold(5, 4, Hold(), t0)
    >>> held.since == t0, hold(4, 4, Hold(), t0).held
    (True, False)
    >>> back = hold(2, 4, held, t0 + dt.timedelta(seconds=10))
    >>> back.held, hold(5, 4, back, t0 + dt.timedelta(seconds=20)).recovering_since
    (True, None)
    >>> hold(2, 4, back, t0 + dt.timedelta(seconds=70)).held
    False
    """
    if unreachable > limit:
        return Hold(before.since or now, None)
    if before.since is None:
        return Hold()
    recovering = before.recovering_since or now
    if now >= recovering + dt.timedelta(seconds=MIN_HOLD_SECONDS):
        return Hold()
    return Hold(before.since, recovering)


__all__ = [
    "MIN_HOLD_SECONDS",
    "REACHABLE",
    "Contact",
    "Hold",
    "Reachability",
    "Reason",
    "hold",
    "judge",
    "picked_up",
    "resolve_max_unreachable",
]
