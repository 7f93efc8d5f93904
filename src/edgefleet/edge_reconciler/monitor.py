"""The device's probation state per model, and the one place health samples are pruned and evaluated.

A model is *watched* from the moment the device switches it to a new version (or restarts while it was on
probation) until the journal says its probation ended. For each watched model :class:`HealthMonitor` keeps when the
switch happened and the previous version's session, still loaded (:attr:`HealthMonitor.fallback`), so a rollback is
a pointer swap. For every served model it keeps the last health verdict that status reports.

:meth:`HealthMonitor.evaluate` is the only place samples are pruned to the window and evaluated
(:func:`edgefleet.core.health.evaluate`): the probation check, the status builder and the report loop's cheap
"did a verdict change?" all go through it. :meth:`HealthMonitor.check` turns a watched model's verdict into what to
do (:func:`edgefleet.core.probation.outcome`); acting on it (rollback, confirmation) is
:mod:`edgefleet.edge_reconciler.switching`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from edgefleet.api.modeldeployment import HealthSpec
from edgefleet.core import health, probation
from edgefleet.edge_reconciler import serving, state


@dataclasses.dataclass(frozen=True)
class ProbationCheck:
    """What one look at a watched model found: the outcome, the verdict it rests on, when a failure became
    detectable (the last sample's time, for the rollback timing) and the journal record it was judged against."""

    outcome: probation.ProbationOutcome
    verdict: health.HealthVerdict
    detected_at: float
    record: state.ModelRecord


class HealthMonitor:
    """Per-model probation state and health verdicts of one device (memory only; the journal is the truth)."""

    def __init__(self, registry: serving.Registry, journal: Callable[[], state.Journal]) -> None:
        self.registry = registry
        self.journal = journal
        self.switched_at: dict[str, float] = {}
        self.fallback: dict[str, serving.Loaded] = {}
        self.verdicts: dict[str, health.HealthVerdict] = {}
        self._evaluated: dict[str, int] = {}  # name -> samples recorded when its probation verdict was computed

    def watched(self) -> list[str]:
        """The models on probation, in the order they were switched."""
        return list(self.switched_at)

    def begin(self, name: str, now: float, fallback: serving.Loaded | None = None) -> None:
        """Start watching ``name`` (switched at ``now``), keeping ``fallback`` loaded as its rollback target."""
        self.switched_at[name] = now
        if fallback is not None:
            self.fallback[name] = fallback
        self.registry.alarm.set()  # start ticking

    def keep_warm(self, name: str, fallback: serving.Loaded) -> None:
        """Keep ``fallback`` loaded as the rollback target of ``name``."""
        self.fallback[name] = fallback

    def end(self, name: str) -> None:
        """Stop watching ``name``; its rollback target is released."""
        self.fallback.pop(name, None)
        self.switched_at.pop(name, None)

    def forget(self, name: str) -> None:
        """Everything about ``name`` (it left the spec)."""
        self.end(name)
        self.verdicts.pop(name, None)
        self._evaluated.pop(name, None)

    # --- evaluation ----------------------------------------------------------------------------------------------

    def _spec(self, name: str) -> HealthSpec:
        return self.journal().health_spec(name)

    def evaluate(self, name: str, now: float) -> health.HealthVerdict | None:
        """The verdict over the window ending at ``now`` (``None``: not served). Prunes older samples first: only the
        window counts, which keeps this O(window), not O(uptime)."""
        recorder = self.registry.recorder(name)
        if recorder is None:
            return None
        spec = self._spec(name)
        recorder.prune(now - spec.window_seconds)
        return health.evaluate(recorder.samples, spec, now)

    def verdict_names(self, now: float) -> dict[str, str]:
        """The current verdict per served model (cheap: no status is built)."""
        out: dict[str, str] = {}
        for loaded in self.registry.all():
            verdict = self.evaluate(loaded.name, now)
            if verdict is not None:
                out[loaded.name] = verdict.verdict
        return out

    def served_verdicts(self, now: float) -> dict[str, health.HealthVerdict]:
        """The verdicts status reports: fresh ones for served models off probation, the probation check's last
        verdict for watched ones (so status says what the rollback decision saw)."""
        for loaded in self.registry.all():
            if loaded.name not in self.switched_at:
                verdict = self.evaluate(loaded.name, now)
                if verdict is not None:
                    self.verdicts[loaded.name] = verdict
        served = {m.name for m in self.registry.all()}
        return {k: v for k, v in self.verdicts.items() if k in served}

    def check(self, name: str, now: float) -> ProbationCheck | None:
        """Look at watched model ``name`` once; ``None`` (and no longer watched) once its probation is over.

        The verdict is re-evaluated only when new samples arrived since the last look.
        """
        rec = self.journal().models.get(name)
        recorder = self.registry.recorder(name)
        if rec is None or rec.probation_since is None or recorder is None:
            self.switched_at.pop(name, None)
            return None
        if self._evaluated.get(name) != recorder.total or name not in self.verdicts:
            verdict = self.evaluate(name, now)
            if verdict is None:  # not reached: the recorder exists
                return None
            self.verdicts[name] = verdict
            self._evaluated[name] = recorder.total
        verdict = self.verdicts[name]
        outcome = probation.outcome(verdict, self.switched_at[name], now, self._spec(name))
        detected = recorder.samples[-1].at if recorder.samples else now
        return ProbationCheck(outcome, verdict, detected, rec)


__all__ = ["HealthMonitor", "ProbationCheck"]
