"""The rollout planner: from a ModelDeployment, its devices and ``now`` to the devices' desired models and status.

:func:`plan` is pure. It reads the whole situation (the deployment with its status and annotations, every EdgeDevice of
the namespace with what it reports, the compiled template of the spec and of the stable revision) and returns data: the
``spec.models`` entry each device should have, the new status, the events to emit and when to look again. The operator
applies the plan; running the planner again on the applied result changes nothing (idempotent), which is what makes
reconciliation by level safe.

The rollout state lives in named ``status`` fields: ``stableRevision`` (what every device falls back to),
``canaryRevision`` (what is being rolled out), ``currentStepIndex`` and ``stepStartedAt``, ``abortedRevision`` (never
retried until the spec changes) with ``rolloutFailure`` (its evidence), and ``lastAttemptedRevision`` with
``compileFailure`` (a spec whose compile failed is not compiled again until it changes). Conditions and the phase are
outputs only. The rules:

* **First revision.** Without a stable revision there is nothing to canary against: the first revision becomes stable at
  once and is installed everywhere, ``maxUnavailable`` devices at a time.
* **Steps.** ``setWeight`` puts the canary on that share of devices (chosen by :mod:`edgefleet.core.canary`) and
  completes when all of them report the canary active. ``pause`` waits ``durationSeconds``, or without it until a
  promote annotation names this revision and step. ``analysis`` completes when the window has passed, the updated
  devices reported ``minSamples`` samples in total and the healthy share is at least ``successThreshold``. After the
  last step the canary becomes stable.
* **Failure.** At any time, more failed canary devices than ``successThreshold`` allows fail the rollout; an analysis
  that has not succeeded ``progressDeadlineSeconds`` after its window fails it, counting silent devices as failures; a
  ``setWeight`` step that made no progress for ``progressDeadlineSeconds`` (no device was given the canary, and a
  device that works on it has not finished) fails it. With ``rollback.automatic`` the
  rollout is aborted: every device returns to stable, ``Ready=False reason=RolledBack`` carries the evidence and the
  revision is recorded as aborted. Without it the deployment is ``Degraded`` and ``Stalled`` until a person aborts or
  changes the spec.
* **Availability.** A device is unavailable while its desired revision differs from the one it reports active. A change
  that would make an available device unavailable is made only while fewer than ``maxUnavailable`` targeted devices are
  unavailable, and only inside a maintenance window. Changes that make a device available (for example returning a
  device that rolled itself back to stable) are always allowed.
* **Held.** ``spec.paused`` or the ``edgefleet.io/paused: "true"`` annotation stop all forward changes; an abort still
  returns devices to stable, because that is the safe direction. While held or waiting for a maintenance window the step
  clock restarts, so deadlines measure time in which progress was possible.
* **Manual signals** are level-triggered and idempotent because each names what it acts on: ``edgefleet.io/promote:
  "<revision>/<stepIndex>"`` completes that step of that revision (pause or analysis), ``edgefleet.io/abort:
  "<revision>"`` aborts that revision, ``edgefleet.io/promote-full: "<revision>"`` skips that revision's remaining
  steps up to its last ``setWeight: 100`` (still within ``maxUnavailable`` and maintenance windows), and
  ``edgefleet.io/retry: "<abortedRevision>/<token>"`` lifts the ban on an aborted revision once per token (the token
  last honoured is ``status.lastRetry``). Stale values are ignored.
* **Compiling.** A revision without a template is compiled first: the plan names it (:attr:`RolloutPlan.compile`) and
  the deployment is ``Compiling``; the operator runs the compile and stores the template. A failed compile is recorded
  in ``status.compileFailure`` and stalls the deployment (``Stalled``, ``Ready=False`` with the compiler's reason) until
  the spec changes.
* **Spec changes.** A new revision supersedes a running canary: its devices go back to stable and the new rollout starts
  at step 0 once compiled. Returning the spec to the stable revision ends the rollout.
* **Late joiners** get the stable revision; they become canaries only when a step needs more devices.
* **Offline devices** (:mod:`~edgefleet.core.planner.reachability`): a device whose Lease was not renewed within its
  duration, or that reports nothing for its entry within ``pickupTimeoutSeconds``, is unreachable: reachable devices
  fill its place in a step's share, ``maxUnavailable`` and ``successThreshold`` count reachable devices, it is given
  nothing but the entry of what it runs, the last step completes on the reachable fleet, and more unreachable devices
  than ``maxUnreachable`` hold the rollout until they return. Every entry carries a validity that the pass refreshes
  while it stays current (:meth:`~edgefleet.core.planner.availability.Ledger.refresh`).
* **Downloads ahead** (``rollout.prestage``): devices a later step will switch get the canary named in their entry to
  download and verify into their inactive slot now, at most ``maxConcurrentPerSite`` per site (one first in a site
  that holds it nowhere yet); it changes no revision, so it costs no availability. Without a canary every prestage is
  cleared and devices drop the staged bytes. ``status.devices.staged`` counts the devices holding it.

Worked example (20 devices on 5 lines, steps ``[setWeight 10, analysis 60s/100 samples, setWeight 100]``,
``maxUnavailable: 25%`` = 5): the first plan after compile puts the canary on 2 devices of 2 different lines and
requeues; once both report it active, step 0 completes and the analysis starts; after 60 s with 2/2 healthy and >= 100
samples the last step puts the canary on the remaining 18 devices, 5 at a time as devices converge; when all 20 run it,
the canary revision becomes stable and ``Ready=True``.

The package, one concept a module: :mod:`~edgefleet.core.planner.devices` (what a device has, reports and gets),
:mod:`~edgefleet.core.planner.availability` (``maxUnavailable`` and maintenance windows, the pass's ledger of device
entries), :mod:`~edgefleet.core.planner.analysis` (evidence and analysis verdicts),
:mod:`~edgefleet.core.planner.steps` (setWeight, pause, analysis and the walk over them),
:mod:`~edgefleet.core.planner.prestage` (downloads ahead of activation),
:mod:`~edgefleet.core.planner.state` (memory, signals, the pass) and :mod:`~edgefleet.core.planner.rollout` (one
pass, :func:`plan`).
"""

from edgefleet.core.planner.availability import resolve_max_unavailable
from edgefleet.core.planner.devices import DeviceChange, apply_change, owned_entries, removal, stale_after
from edgefleet.core.planner.reachability import Contact
from edgefleet.core.planner.rollout import RolloutPlan, plan
from edgefleet.core.planner.state import (
    ANNOTATION_ABORT,
    ANNOTATION_PAUSED,
    ANNOTATION_PROMOTE,
    ANNOTATION_PROMOTE_FULL,
    ANNOTATION_RETRY,
    Event,
    EventType,
)
from edgefleet.core.planner.steps import describe_step

__all__ = [
    "ANNOTATION_ABORT",
    "ANNOTATION_PAUSED",
    "ANNOTATION_PROMOTE",
    "ANNOTATION_PROMOTE_FULL",
    "ANNOTATION_RETRY",
    "Contact",
    "DeviceChange",
    "Event",
    "EventType",
    "RolloutPlan",
    "apply_change",
    "describe_step",
    "owned_entries",
    "plan",
    "removal",
    "resolve_max_unavailable",
    "stale_after",
]
