"""The pure transitions of the install journal's records (edgefleet.edge_reconciler.state.ModelRecord / Journal)."""

from __future__ import annotations

import pytest

from edgefleet.api.edgedevice import ArtifactRef, DesiredModel, EdgeDeviceSpec
from edgefleet.api.modeldeployment import HealthSpec
from edgefleet.edge_reconciler import state

D1, D2, D3 = (f"sha256:{i * 64}" for i in "123")
V1 = state.SlotRecord(digest=D1, version="1.0.0", revision="r1")
V2 = state.SlotRecord(digest=D2, version="2.0.0", revision="r2")
ON_PROBATION = state.ModelRecord(
    name="demo", active="b", slots={"a": V1, "b": V2}, probation_since=100.0, probation_restarts=1
)


def test_rolled_back_serves_the_previous_slot_and_rejects_the_active_digest() -> None:
    rec = ON_PROBATION.rolled_back("rolled back version 2.0.0 to 1.0.0: LatencyP95: slow")
    assert rec.active == "a" and rec.active_slot == V1 and rec.previous == "b"
    assert rec.probation_since is None
    assert rec.rejected == {D2: "RolledBack"}
    assert rec.rejected_reason == {D2: "rolled back version 2.0.0 to 1.0.0: LatencyP95: slow"}
    assert rec.probation_restarts == 1  # only a clean stop or a restart rollback resets the count


def test_rolled_back_needs_a_previous_slot() -> None:
    with pytest.raises(ValueError, match="no previous slot"):
        state.ModelRecord(name="demo", active="a", slots={"a": V1}).rolled_back("x")


def test_rejecting_keeps_earlier_rejections() -> None:
    rec = ON_PROBATION.rejecting(D3, "Failed", "SmokeTestFailed: golden sample 0").rejecting(D2, "RolledBack", "r")
    assert rec.rejected == {D3: "Failed", D2: "RolledBack"}
    assert rec.rejected_reason == {D3: "SmokeTestFailed: golden sample 0", D2: "r"}
    assert rec.active == "b"  # rejecting changes nothing else


@pytest.mark.parametrize(("since", "on_probation"), [(None, False), (5.0, True)])
def test_switched_serves_the_new_slot_and_ends_the_install(since: float | None, on_probation: bool) -> None:
    installing = state.ModelRecord(
        name="demo", active="a", slots={"a": V1}, install=state.InstallRecord(digest=D2, step="testing", slot="b")
    )
    rec = installing.switched("b", V2, since)
    assert rec.active == "b" and rec.slots == {"a": V1, "b": V2} and rec.install is None
    assert (rec.probation_since is not None) == on_probation


def test_recovery_transitions() -> None:
    damaged = ON_PROBATION.without_slot("b")
    assert damaged.active is None and damaged.slots == {"a": V1}
    assert ON_PROBATION.without_slot("a").active == "b"
    fallback = damaged.serving("a")
    assert fallback.active == "a" and fallback.probation_since is None
    assert ON_PROBATION.off_probation().probation_since is None
    assert ON_PROBATION.with_restarts(0).probation_restarts == 0


def test_journal_transitions() -> None:
    health = HealthSpec(window_seconds=7)
    ref = ArtifactRef(uri="http://store/demo", digest=D2, size_bytes=1, precision="fp32")
    spec = EdgeDeviceSpec(
        models=[DesiredModel(name="demo", deployment="d", version="2.0.0", revision="r2", artifact=ref, health=health)]
    )
    journal = state.Journal().with_spec(spec, 3).with_model(ON_PROBATION)
    assert journal.observed_generation == 3 and journal.desired("demo") is not None
    assert journal.health_spec("demo") == health
    assert journal.health_spec("gone") == HealthSpec()
    assert journal.with_model(ON_PROBATION.off_probation()).models["demo"].probation_since is None
    assert journal.without_model("demo").models == {}
    assert journal.view()["demo"].on_probation
