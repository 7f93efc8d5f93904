"""The fleet map's tiles: one model's state from its desired entry, report and deployment status; a device's tile;
reachability from the heartbeat Lease; counts per line and site."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from edgefleet.api import common, edgedevice, modeldeployment
from edgefleet.core import fleetmap
from edgefleet.testing import rollout

T0 = rollout.T0
STABLE = rollout.template(rollout.spec(version="1.0.0"))
CANARY = rollout.template(rollout.spec(version="1.1.0"))
X86 = {common.LABEL_HARDWARE_CLASS: "x86"}
STATUS = modeldeployment.ModelDeploymentStatus(stable_revision=STABLE.revision, canary_revision=CANARY.revision)
ONLINE = fleetmap.Reachability(True, "online", T0)


def entry(template: Any = CANARY) -> edgedevice.DesiredModel:
    desired = template.desired_for(rollout.NAME, X86)
    assert desired is not None
    return desired  # type: ignore[no-any-return]


def report(**fields: Any) -> edgedevice.ModelStatus:
    return edgedevice.ModelStatus.model_validate({"name": rollout.MODEL, **fields})


def health(verdict: str, reason: str | None = None) -> dict[str, Any]:
    return {"verdict": verdict, "samples": 80, "reason": reason}


CANARY_DIGEST = entry().artifact.digest
STABLE_DIGEST = entry(STABLE).artifact.digest
ON_STABLE = {"activeRevision": STABLE.revision, "activeVersion": "1.0.0"}
ON_CANARY = {"activeRevision": CANARY.revision, "activeVersion": "1.1.0"}


@pytest.mark.parametrize(
    ("desired", "reported", "state", "reason"),
    [
        (entry(), None, "installing", "waiting for the device to report 1.1.0"),
        (entry(), report(state="Downloading", desiredDigest=CANARY_DIGEST, **ON_STABLE), "installing", "Downloading"),
        (entry(), report(state="Active", desiredDigest=STABLE_DIGEST, **ON_STABLE), "installing", "not picked up"),
        (entry(), report(state="Active", desiredDigest=CANARY_DIGEST, **ON_CANARY), "canary", "canary 1.1.0"),
        (entry(STABLE), report(state="Active", desiredDigest=STABLE_DIGEST, **ON_STABLE), "stable", "stable 1.0.0"),
        (
            entry(),
            report(state="RolledBack", desiredDigest=CANARY_DIGEST, message="rolled back version 1.1.0", **ON_STABLE),
            "rolledBack",
            "rolled back version 1.1.0",
        ),
        (
            entry(),
            report(state="Failed", desiredDigest=CANARY_DIGEST, message="SmokeTestFailed: x", **ON_STABLE),
            "failed",
            "SmokeTestFailed",
        ),
        # a rollback of an earlier digest is not held against the entry the device was asked for since
        (entry(), report(state="RolledBack", desiredDigest=STABLE_DIGEST, **ON_STABLE), "installing", "not picked"),
        (
            entry(),
            report(state="Active", desiredDigest=CANARY_DIGEST, health=health("Unhealthy", "p95 above"), **ON_CANARY),
            "failed",
            "p95 above",
        ),
        (None, None, "idle", "nothing desired"),
        (None, report(state="Active", **ON_STABLE), "other", "not desired any more"),
    ],
)
def test_model_state(
    desired: edgedevice.DesiredModel | None, reported: edgedevice.ModelStatus | None, state: str, reason: str
) -> None:
    got, why = fleetmap.model_state(desired, reported, STATUS)
    assert (got, reason in why) == (state, True), why


def test_a_revision_that_is_neither_stable_nor_canary_reads_other() -> None:
    status = modeldeployment.ModelDeploymentStatus(stable_revision=STABLE.revision)
    got, _ = fleetmap.model_state(entry(), report(state="Active", desiredDigest=CANARY_DIGEST, **ON_CANARY), status)
    assert got == "other"


def device(name: str, models: list[edgedevice.DesiredModel], reports: list[edgedevice.ModelStatus]) -> Any:
    labels = {common.LABEL_SITE: "north", common.LABEL_LINE: "line-2", common.LABEL_HARDWARE_CLASS: "x86"}
    return edgedevice.EdgeDevice(
        metadata=common.ObjectMeta(name=name, namespace="plant", labels=labels),
        spec=edgedevice.EdgeDeviceSpec(models=models),
        status=edgedevice.EdgeDeviceStatus(models=reports),
    )


def md() -> modeldeployment.ModelDeployment:
    return modeldeployment.ModelDeployment(
        metadata=common.ObjectMeta(name=rollout.NAME, namespace="plant"), spec=rollout.spec(), status=STATUS
    )


def test_the_most_urgent_model_colours_the_tile() -> None:
    other = entry().model_copy(update={"name": "vibration"})
    d = device(
        "cam-1",
        [entry(), other],
        [
            report(state="Active", desiredDigest=CANARY_DIGEST, **ON_CANARY),
            report(name="vibration", state="Failed", desiredDigest=CANARY_DIGEST, message="VerificationFailed: sig"),
        ],
    )
    t = fleetmap.tile(d, {rollout.NAME: md()}, ONLINE)
    assert (t.state, t.id, t.line_key) == ("failed", "plant/cam-1", "north/line-2")
    assert t.reason == "vibration: VerificationFailed: sig"
    assert [m.state for m in t.models] == ["canary", "failed"]


def test_offline_wins_and_keeps_what_the_device_last_said() -> None:
    d = device("cam-2", [entry()], [report(state="Active", desiredDigest=CANARY_DIGEST, **ON_CANARY)])
    beat = fleetmap.Heartbeat(T0 - dt.timedelta(seconds=700), 600, "cam-2")
    t = fleetmap.tile(d, {rollout.NAME: md()}, fleetmap.reachability(beat, T0))
    assert t.state == "offline" and t.online is False
    since = "no heartbeat since 2026-01-05 09:48:20 UTC (Lease duration 600 s)"
    assert t.reason.startswith(f"{since}; last reported: canary")
    # the same reason a second later: an offline tile does not change while it stays offline
    again = fleetmap.tile(d, {rollout.NAME: md()}, fleetmap.reachability(beat, T0 + dt.timedelta(seconds=1)))
    assert again == t


@pytest.mark.parametrize(
    ("beat", "online"),
    [
        (fleetmap.Heartbeat(T0 - dt.timedelta(seconds=599), 600), True),
        (fleetmap.Heartbeat(T0 - dt.timedelta(seconds=601), 600), False),
        (fleetmap.Heartbeat(None, 600), False),
        (fleetmap.Heartbeat(T0, None), False),
        (None, False),
    ],
)
def test_reachability_is_the_lease_renewed_within_its_duration(beat: fleetmap.Heartbeat | None, online: bool) -> None:
    assert fleetmap.reachability(beat, T0).online is online


def test_unknown_reachability_never_marks_a_device_offline() -> None:
    d = device("cam-3", [entry()], [report(state="Active", desiredDigest=CANARY_DIGEST, **ON_CANARY)])
    assert fleetmap.tile(d, {rollout.NAME: md()}, fleetmap.UNKNOWN).state == "canary"


def test_summary_counts_every_tile_once_per_line_and_site() -> None:
    base = fleetmap.Tile("ns", "a", "south", "line-1", "x86", "stable", "", (), True)
    tiles = [
        dataclasses.replace(base, name=f"d{i}", site=site, line=line, state=state)
        for i, (site, line, state) in enumerate(
            [
                ("south", "line-10", "canary"),
                ("south", "line-9", "stable"),
                ("north", "line-1", "offline"),
                ("", "", "idle"),
                ("north", "line-1", "rolledBack"),
            ]
        )
    ]
    s = fleetmap.summarise(tiles)
    assert [site.site for site in s.sites] == ["north", "south", ""]
    assert [line.line for line in s.sites[1].lines] == ["line-9", "line-10"]
    assert s.total == 5 and sum(s.counts.values()) == 5
    assert s.sites[0].counts["offline"] == 1 and s.sites[0].counts["rolledBack"] == 1 and s.sites[0].total == 2
    assert [t.name for t in fleetmap.line_tiles(tiles, "north/line-1")] == ["d2", "d4"]
    assert fleetmap.deployment_states(tiles, "ns", "weld") == []  # no models, no entries of the deployment


def test_a_rollback_is_remembered_while_its_revision_is_canary_or_aborted() -> None:
    d = device(
        "cam-4",
        [entry()],
        [
            report(
                state="RolledBack", desiredDigest=CANARY_DIGEST, message="rolled back version 1.1.0: slow", **ON_STABLE
            )
        ],
    )
    [seen] = fleetmap.rollbacks(fleetmap.tile(d, {rollout.NAME: md()}, ONLINE), T0)
    assert (seen.deployment, seen.revision, seen.version) == (rollout.NAME, CANARY.revision, "1.1.0")
    aborted = md().model_copy(
        update={
            "status": modeldeployment.ModelDeploymentStatus(
                stable_revision=STABLE.revision, aborted_revision=CANARY.revision
            )
        }
    )
    note = fleetmap.rollback_note(seen, {rollout.NAME: aborted})
    assert note == "rolled back 1.1.0 on its own at 10:00:00 UTC: rolled back version 1.1.0: slow"
    assert fleetmap.rollback_note(seen, {rollout.NAME: md()}) == note  # still the canary
    moved_on = md().model_copy(
        update={"status": modeldeployment.ModelDeploymentStatus(stable_revision=STABLE.revision, canary_revision="x")}
    )
    assert fleetmap.rollback_note(seen, {rollout.NAME: moved_on}) == ""
    assert fleetmap.rollback_note(None, {rollout.NAME: aborted}) == ""
