"""Downloads ahead of activation (``spec.rollout.prestage``): which devices get the canary named in their entry early.

While a canary revision rolls out, every targeted device that a later step will switch (it has an entry, runs a
revision other than the canary, and a compile target of the canary covers it) may download and verify the canary into
its inactive slot before its step comes: the pass names the canary's artifact in the device's entry
(``spec.models[].prestage``) and keeps everything else of the entry, so the device keeps running its revision and
activation still follows the steps, maintenance windows and ``maxUnavailable`` (:mod:`.availability`: a prestage
changes no revision, so it is never a costly change).

The budget is per site (label ``edgefleet.io/site``; devices without one form one site): at most
``maxConcurrentPerSite`` devices of a site download ahead at once, in the order the steps will switch them
(:func:`edgefleet.core.canary.order`). A site that holds the canary nowhere yet (no device staged it or runs it)
stages **one** device first: its site cache (a pull-through registry, an HTTP cache) fetches the artifact from the
origin once, and the site's other devices are served by the cache. ``maxBytesPerSecondPerSite`` is shared evenly:
each device paces its download at ``budget / maxConcurrentPerSite``. A device that reports the canary staged
(``status.models[].stagedDigest``) keeps the entry and no longer counts against the budget.

Without a canary (steady, rolled back, aborted) or without ``prestage``, every prestage is removed, which makes the
devices drop the staged bytes. Everything here is pure, apart from the pass's ledger.

Worked example: 6 devices on sites a and b, ``maxConcurrentPerSite: 2``, nothing staged: the first pass names the
canary on one device of each site; once a's device reports it staged, a's next two devices are named.
"""

from __future__ import annotations

from edgefleet.api import common, edgedevice
from edgefleet.core import canary
from edgefleet.core.planner import devices, state


def _without(entry: edgedevice.DesiredModel) -> edgedevice.DesiredModel:
    return entry.model_copy(update={"prestage": None})


def _staged(device: devices.DeviceView, artifact: edgedevice.ArtifactRef) -> bool:
    return device.report is not None and device.report.staged_digest == artifact.digest


def _site(device: devices.DeviceView) -> str:
    return device.labels.get(common.LABEL_SITE, "")


def candidates(run: state.PlanningPass, canary_revision: str) -> list[devices.DeviceView]:
    """The targeted devices a later step will switch to ``canary_revision``, in the order the steps switch them."""
    pool = []
    for device in run.targeted:
        if not device.reachable:
            continue  # an unreachable device is given nothing but the entry of what it runs
        entry = run.ledger.entry(device)
        ahead = run.canary_entry(device) if run.candidate is not None else None
        if entry is None or ahead is None or entry.revision == canary_revision or device.active == canary_revision:
            continue
        if ahead.artifact.digest != entry.artifact.digest:
            pool.append(device)
    ranked = canary.order({d.name: d.labels for d in pool}, run.deployment)
    by_name = {d.name: d for d in pool}
    return [by_name[name] for name in ranked]


def apply(run: state.PlanningPass, memory: state.RolloutState) -> None:
    """Name the canary in the entries of the devices that may download it now; clear it everywhere else."""
    policy = run.spec.rollout.prestage
    revision = memory.canary_revision
    chosen: dict[str, edgedevice.PrestagedArtifact] = {}
    if policy is not None and revision is not None and run.candidate is not None and run.candidate.revision == revision:
        pool = candidates(run, revision)
        rate = (
            max(1, policy.max_bytes_per_second_per_site // policy.max_concurrent_per_site)
            if policy.max_bytes_per_second_per_site is not None
            else None
        )
        warm = {_site(d) for d in run.targeted if d.active == revision}
        in_flight: dict[str, int] = {}
        staged_now = []
        for device in pool:
            artifact = run.canary_entry(device)
            assert artifact is not None
            if _staged(device, artifact.artifact):
                warm.add(_site(device))
                staged_now.append(device)
        for device in pool:
            ahead = run.canary_entry(device)
            assert ahead is not None
            named = edgedevice.PrestagedArtifact(
                version=ahead.version, revision=revision, artifact=ahead.artifact, max_bytes_per_second=rate
            )
            site = _site(device)
            if device in staged_now:
                chosen[device.name] = named
                continue
            limit = policy.max_concurrent_per_site if site in warm else 1
            if in_flight.get(site, 0) < limit:
                in_flight[site] = in_flight.get(site, 0) + 1
                chosen[device.name] = named
    for device in run.views:
        entry = run.ledger.entry(device)
        if entry is None:
            continue
        wanted = chosen.get(device.name)
        if entry.prestage != wanted:
            run.ledger.switch(device, entry.model_copy(update={"prestage": wanted}) if wanted else _without(entry))


def staged(run: state.PlanningPass, memory: state.RolloutState) -> int:
    """Devices not yet on the canary that report it verified in their inactive slot (``status.devices.staged``)."""
    revision = memory.canary_revision
    if revision is None or run.candidate is None or run.candidate.revision != revision:
        return 0
    return sum(_staged(d, a.artifact) for d in candidates(run, revision) if (a := run.canary_entry(d)) is not None)


__all__ = ["apply", "candidates", "staged"]
