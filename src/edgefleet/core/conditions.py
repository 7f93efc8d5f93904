"""Status conditions the kstatus way, so Argo CD, Flux and ``kubectl wait`` read edgefleet health natively.

The rules (Kubernetes API conventions plus kstatus):

* ``Ready`` is always present, with status True, False or Unknown.
* ``Reconciling`` and ``Stalled`` are present only while True; a False one is removed, never written.
* Every condition carries the ``observedGeneration`` it was computed from.
* ``lastTransitionTime`` changes only when ``status`` changes; a new reason or message keeps the old time.

Conditions of other types (written by someone else, or the agent's ``Healthy``) are kept, after the three managed ones.
The operator (ModelDeployment status) and the edge agent (EdgeDevice status) both set conditions through
:func:`set_condition`; the agent passes its smaller ``max_message``. Everything here is pure.
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
MAX_MESSAGE = 32768
"""The API's limit on ``Condition.message`` (``metav1.Condition``)."""


@dataclasses.dataclass(frozen=True)
class Cause:
    """Why a condition has its status: a CamelCase reason and a human-readable message (as ``metav1.StatusCause``)."""

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
    *,
    max_message: int = MAX_MESSAGE,
) -> list[common.Condition]:
    """Return ``conditions`` with ``type_`` set, keeping its transition time when the status is unchanged (pure).

    ``message`` is cut to ``max_message`` characters. The result is in a fixed order: Ready, Reconciling, Stalled,
    then the other types by name.

    Worked example: Ready goes from ``False/Progressing`` (set at 10:00) to ``False/RolledBack`` at 10:05: the reason
    and message change but ``lastTransitionTime`` stays 10:00, because the status did not change.

    >>> t0, t1 = dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC), dt.datetime(2026, 1, 1, 10, 5, tzinfo=dt.UTC)
    >>> first = set_condition([], READY, "False", "Progressing", "step 1/3", 1, t0)
    >>> second = set_condition(first, READY, "False", "RolledBack", "x" * 2000, 1, t1, max_message=1024)
    >>> second[0].reason, second[0].last_transition_time == t0, len(second[0].message)
    ('RolledBack', True, 1024)
    """
    previous = find(conditions, type_)
    transition = previous.last_transition_time if previous is not None and previous.status == status else now
    updated = common.Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:max_message],
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
    ready_reason: Cause,
    reconciling: Cause | None,
    stalled: Cause | None,
    generation: int | None,
    now: dt.datetime,
) -> list[common.Condition]:
    """Set the three managed conditions at once (pure).

    ``reconciling``/``stalled`` set to None remove the condition, as kstatus wants abnormal-true conditions absent
    rather than False.

    >>> t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    >>> out = kstatus([], ready="Unknown", ready_reason=Cause("Progressing", "step 1/3"),
    ...               reconciling=Cause("Progressing", "step 1/3"), stalled=None, generation=2, now=t0)
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
    "MAX_MESSAGE",
    "READY",
    "RECONCILING",
    "STALLED",
    "Cause",
    "find",
    "kstatus",
    "remove_condition",
    "set_condition",
]
