"""Convergence plan: what a device must do to run exactly its desired models (pure).

Input is the desired ``spec.models`` of the device's EdgeDevice and a view of what is installed locally
(:class:`Installed`, one per model name). Output is a :class:`ConvergencePlan`: one step per model name, removals
first, so a device frees its memory before it loads anything new.

Per model, the first rule that applies wins:

=====================================  ==========================================================
situation                              step
=====================================  ==========================================================
installed, no longer desired           ``remove``
desired digest is the active digest    ``in-sync``
desired digest was rejected before     ``blocked`` (rolled back or failed; wait for a new digest)
the entry's validity has expired       ``expired`` (keep serving; wait for a refreshed entry)
active model is still on probation     ``wait`` (its rollback target must stay in the other slot)
anything else                          ``install``
=====================================  ==========================================================

Worked example: desired ``[a@sha256:11.., b@sha256:22..]``, installed ``a`` active ``sha256:11..``, ``c`` active
``sha256:33..`` and ``b`` with ``sha256:22..`` rejected (rolled back) gives
``remove c, in-sync a, blocked b`` (``remove`` first, then desired order).

An install ends in a *switch* to the prepared version, which :func:`still_desired` allows only while the spec still
names that digest (the spec may move on during a long download) and its entry has not expired.

Expiry (``DesiredModel.validity``, stamped and refreshed by the operator, Uptane's timestamp role in small): a device
never begins an install from an entry past its ``expiresAt``, and never switches to one, so a device that boots
without network from its journal's cached spec, or comes back after weeks, cannot install a revision that was
aborted or superseded meanwhile; what it serves keeps serving. An entry without a validity (written by hand, or by
an operator that predates it) never expires.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Literal

from edgefleet.api.edgedevice import DesiredModel

StepKind = Literal["remove", "in-sync", "blocked", "expired", "wait", "install"]


@dataclasses.dataclass(frozen=True)
class Installed:
    """What the device holds for one model name."""

    name: str
    active_digest: str | None = None
    previous_digest: str | None = None
    rejected: Mapping[str, str] = dataclasses.field(default_factory=dict)  # digest -> state (RolledBack/Failed)
    on_probation: bool = False


@dataclasses.dataclass(frozen=True)
class Step:
    """One thing to do for one model; ``desired`` is ``None`` only for ``remove``."""

    kind: StepKind
    name: str
    desired: DesiredModel | None = None
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class ConvergencePlan:
    """Ordered steps; :attr:`converged` is true when nothing is left to do."""

    steps: tuple[Step, ...]

    @property
    def converged(self) -> bool:
        """True when every step is ``in-sync``, ``blocked`` or ``expired`` (nothing the device can do by itself)."""
        return all(s.kind in ("in-sync", "blocked", "expired") for s in self.steps)

    def of(self, kind: StepKind) -> list[Step]:
        """The steps of one kind, in plan order."""
        return [s for s in self.steps if s.kind == kind]


def plan(
    desired: Sequence[DesiredModel], installed: Mapping[str, Installed], now: dt.datetime | None = None
) -> ConvergencePlan:
    """The convergence plan for ``desired`` given ``installed`` at ``now`` (pure; see the module table; without
    ``now`` nothing expires).

    The module's worked example:

    >>> from edgefleet.api.edgedevice import ArtifactRef
    >>> def want(name: str, digest: str) -> DesiredModel:
    ...     ref = ArtifactRef(uri=f"http://store/{name}", digest=digest, size_bytes=1, precision="fp32")
    ...     return DesiredModel(name=name, deployment=name, version="1.0.0", revision="r", artifact=ref)
    >>> d1, d2, d3 = (f"sha256:{i * 64}" for i in "123")
    >>> installed = {"a": Installed("a", d1), "c": Installed("c", d3), "b": Installed("b", rejected={d2: "RolledBack"})}
    >>> result = plan([want("a", d1), want("b", d2)], installed)
    >>> [(s.kind, s.name) for s in result.steps], result.converged
    ([('remove', 'c'), ('in-sync', 'a'), ('blocked', 'b')], False)

    An entry past its validity is not installed (but an active one keeps serving):

    >>> from edgefleet.api.edgedevice import DesiredValidity
    >>> t0 = dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)
    >>> stale = want("b", d3).model_copy(update={"validity": DesiredValidity(assigned_at=t0, expires_at=t0)})
    >>> step = plan([stale], {}, now=t0).steps[0]
    >>> step.kind, step.reason
    ('expired', 'its desired entry expired at 2026-01-05T10:00:00+00:00')
    """
    wanted = {m.name for m in desired}
    steps: list[Step] = [
        Step("remove", name, None, "no longer in spec.models")
        for name in sorted(installed)
        if name not in wanted and installed[name].active_digest is not None
    ]
    for model in desired:
        local = installed.get(model.name, Installed(model.name))
        digest = model.artifact.digest
        if local.active_digest == digest:
            steps.append(Step("in-sync", model.name, model))
        elif digest in local.rejected:
            steps.append(
                Step("blocked", model.name, model, f"{digest} was {local.rejected[digest]}; waiting for a new digest")
            )
        elif now is not None and model.expired(now):
            assert model.validity is not None
            reason = f"its desired entry expired at {model.validity.expires_at.isoformat()}"
            steps.append(Step("expired", model.name, model, reason))
        elif local.on_probation:
            steps.append(Step("wait", model.name, model, "the active version is still on probation"))
        else:
            steps.append(Step("install", model.name, model))
    return ConvergencePlan(tuple(steps))


def still_desired(desired: Sequence[DesiredModel], name: str, digest: str, now: dt.datetime | None = None) -> bool:
    """Whether a version of ``name`` prepared for ``digest`` may be switched to: only while the spec still names that
    digest and (at ``now``) its entry has not expired, so a device never switches to a version the spec has moved on
    from (pure).

    >>> still_desired([], "a", "sha256:" + "1" * 64)
    False
    """
    current = next((m for m in desired if m.name == name), None)
    if current is None or current.artifact.digest != digest:
        return False
    return now is None or not current.expired(now)


__all__ = ["ConvergencePlan", "Installed", "Step", "StepKind", "plan", "still_desired"]
