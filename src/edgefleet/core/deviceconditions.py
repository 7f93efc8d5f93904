"""What an EdgeDevice's conditions say, from the state of its models (pure, kstatus style).

The agent writes four condition types on its own EdgeDevice, read by the operator, ``kubectl wait``, Argo CD and Flux:

===============  ==========================================================================================
``Ready``        always present: True (``Converged``) when every desired model serves its desired digest;
                 False with ``Installing`` while one is being installed, ``DesiredVersionRejected`` when one
                 was rejected, else ``DesiredStateExpired`` (a desired entry expired before it was installed)
``Healthy``      always present: False (``HealthThresholdsBroken``) while a served model's verdict is Unhealthy
``Reconciling``  only while True (``Installing``): a model is Pending, Downloading, Verifying or Installing
``Stalled``      only while True (``DesiredVersionRejected``): a desired version was rolled back or failed;
                 (``SpecRefused``): the latest spec did not validate on the device (it keeps serving the last
                 accepted one); ``Ready`` is then False with the same reason
===============  ==========================================================================================

Conditions are upserted with :func:`edgefleet.core.conditions.set_condition`; a message is cut at
:data:`MAX_MESSAGE` characters (a device's status stays small; the per-model messages carry the detail).
``Reconciling`` and ``Stalled`` are dropped from the previous conditions before they are set again, so while True
their ``lastTransitionTime`` is the time of the status that carries them.

Worked example: a device installing ``b`` while ``a`` serves and is healthy says ``Ready=False/Installing``,
``Reconciling=True/Installing`` ("installing b") and ``Healthy=True/WithinThresholds``; once ``b`` is Active,
``Reconciling`` is gone and ``Ready=True/Converged``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence

from edgefleet.api.common import Condition, ConditionStatus
from edgefleet.api.edgedevice import ModelStatus
from edgefleet.core import conditions as kconditions

MAX_MESSAGE = 1024
EXPIRED = "DesiredStateExpired"
"""Ready's reason while a desired entry expired before its version was installed (nothing installs until a refresh)."""
INSTALLING = ("Pending", "Downloading", "Verifying", "Installing")
REJECTED = ("RolledBack", "Failed")


def _set(
    conds: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: dt.datetime,
) -> list[Condition]:
    return kconditions.set_condition(conds, type_, status, reason, message[:MAX_MESSAGE], generation, now)


def conditions(
    previous: Sequence[Condition],
    models: Iterable[ModelStatus],
    generation: int | None,
    now: dt.datetime,
    refused: str | None = None,
    expired: Collection[str] = (),
) -> list[Condition]:
    """Ready and Healthy (always), Reconciling and Stalled (only while True) for ``models`` (pure).

    The module's worked example:

    >>> t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    >>> a = ModelStatus(name="a", state="Active")
    >>> out = conditions([], [a, ModelStatus(name="b", state="Downloading")], 3, t0)
    >>> [(c.type, c.status, c.reason) for c in out]
    [('Ready', 'False', 'Installing'), ('Reconciling', 'True', 'Installing'), ('Healthy', 'True', 'WithinThresholds')]
    >>> [(c.type, c.status) for c in conditions(out, [a, ModelStatus(name="b", state="Active")], 3, t0)]
    [('Ready', 'True'), ('Healthy', 'True')]
    >>> [(c.type, c.reason) for c in conditions([], [a], 4, t0, refused="spec.models[0].artifact.uri: ...")][:2]
    [('Ready', 'SpecRefused'), ('Stalled', 'SpecRefused')]
    """
    models = list(models)
    installing = [m.name for m in models if m.state in INSTALLING and m.name not in expired]
    stuck = [m.name for m in models if m.state in REJECTED]
    waiting = [m.name for m in models if m.name in expired]
    unhealthy = [m.name for m in models if m.health is not None and m.health.verdict == "Unhealthy"]
    conds = [c for c in previous if c.type not in ("Reconciling", "Stalled")]
    if installing:
        conds = _set(conds, "Reconciling", "True", "Installing", f"installing {', '.join(installing)}", generation, now)
    if refused is not None:
        message = f"the desired spec was refused, the device serves the last spec it accepted: {refused}"
        conds = _set(conds, "Stalled", "True", "SpecRefused", message, generation, now)
        conds = _set(conds, "Ready", "False", "SpecRefused", message, generation, now)
    else:
        if stuck:
            conds = _set(
                conds, "Stalled", "True", "DesiredVersionRejected",
                f"desired version rejected for {', '.join(stuck)}; see status.models[].message", generation, now,
            )  # fmt: skip
        ready = not installing and not stuck and not waiting
        if ready:
            reason, message = "Converged", "serving every desired model"
        elif installing or stuck:
            reason = "Installing" if installing else "DesiredVersionRejected"
            message = "not serving every desired model at its desired digest"
        else:
            reason = EXPIRED
            message = (
                f"the desired entry of {', '.join(waiting)} expired: nothing new is installed until the operator "
                "refreshes it; see status.models[].message"
            )
        conds = _set(conds, "Ready", "True" if ready else "False", reason, message, generation, now)
    return _set(
        conds,
        "Healthy",
        "False" if unhealthy else "True",
        "HealthThresholdsBroken" if unhealthy else "WithinThresholds",
        f"unhealthy: {', '.join(unhealthy)}" if unhealthy else "",
        generation,
        now,
    )


__all__ = ["EXPIRED", "MAX_MESSAGE", "conditions"]
