"""Status conditions the kstatus way, so Argo CD, Flux and ``kubectl wait`` read edgefleet health natively.

The rules (Kubernetes API conventions plus kstatus):

* ``Ready`` is always present, with status True, False or Unknown.
* ``Reconciling`` and ``Stalled`` are present only while True; a False one is removed, never written.
* Every condition carries the ``observedGeneration`` it was computed from.
* ``lastTransitionTime`` changes only when ``status`` changes; a new reason or message keeps the old time.

Conditions of other types (written by someone else) are kept as they are, after the three managed ones. Everything here
is pure.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from edgefleet.api import common

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
MANAGED = (READY, RECONCILING, STALLED)


@dataclasses.dataclass(frozen=True)
class Reason:
    """A reason and a human-readable message for one condition."""

    reason: str
    message: str = ""


def set_condition(
    conditions: Sequence[common.Condition],
    type_: str,
    status: common.ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: dt.datetime,
) -> list[common.Condition]:
    """Return ``conditions`` with ``type_`` set, keeping its transition time when the status is unchanged (pure).

    Worked example: Ready goes from ``False/Progressing`` (set at 10:00) to ``False/RolledBack`` at 10:05: the reason
    and message change but ``lastTransitionTime`` stays 10:00, because the status did not change.
    """
    previous = find(conditions, type_)
    transition = previous.last_transition_time if previous is not None and previous.status == status else now
    updated = common.Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:32768],
        last_transition_time=transition,
        observed_generation=generation,
    )
    out = [c for c in conditions if c.type != type_]
    out.append(updated)
    return _ordered(out)


def remove_condition(conditions: Sequence[common.Condition], type_: str) -> list[common.Condition]:
    """Return ``conditions`` without ``type_`` (pure)."""
    return [c for c in conditions if c.type != type_]


def find(conditions: Sequence[common.Condition], type_: str) -> common.Condition | None:
    """The condition of ``type_``, or None (pure)."""
    return next((c for c in conditions if c.type == type_), None)


def kstatus(
    conditions: Sequence[common.Condition],
    *,
    ready: common.ConditionStatus,
    ready_reason: Reason,
    reconciling: Reason | None,
    stalled: Reason | None,
    generation: int | None,
    now: dt.datetime,
) -> list[common.Condition]:
    """Set the three managed conditions at once (pure).

    ``reconciling``/``stalled`` set to None remove the condition, as kstatus wants abnormal-true conditions absent
    rather than False.

    >>> t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    >>> out = kstatus([], ready="Unknown", ready_reason=Reason("Progressing", "step 1/3"),
    ...               reconciling=Reason("Progressing", "step 1/3"), stalled=None, generation=2, now=t0)
    >>> [(c.type, c.status, c.observed_generation) for c in out]
    [('Ready', 'Unknown', 2), ('Reconciling', 'True', 2)]
    """
    out = set_condition(conditions, READY, ready, ready_reason.reason, ready_reason.message, generation, now)
    for type_, value in ((RECONCILING, reconciling), (STALLED, stalled)):
        if value is None:
            out = remove_condition(out, type_)
        else:
            out = set_condition(out, type_, "True", value.reason, value.message, generation, now)
    return out


def _ordered(conditions: list[common.Condition]) -> list[common.Condition]:
    # A fixed order keeps status patches minimal and makes "plan twice" comparisons exact.
    rank = {t: i for i, t in enumerate(MANAGED)}
    return sorted(conditions, key=lambda c: (rank.get(c.type, len(MANAGED)), c.type))


__all__ = [
    "MANAGED",
    "READY",
    "RECONCILING",
    "STALLED",
    "Reason",
    "find",
    "kstatus",
    "remove_condition",
    "set_condition",
]
