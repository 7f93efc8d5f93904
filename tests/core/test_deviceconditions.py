"""Table tests for what an EdgeDevice's conditions say (edgefleet.core.deviceconditions)."""

from __future__ import annotations

import datetime as dt
import doctest

import pytest

from edgefleet.api.common import Condition
from edgefleet.api.edgedevice import HealthSummary, ModelState, ModelStatus
from edgefleet.core import deviceconditions, health

T0 = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)


def test_worked_examples_in_docstrings_hold() -> None:
    result = doctest.testmod(deviceconditions, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def model(name: str, state: ModelState, verdict: health.VerdictName | None = None) -> ModelStatus:
    summary = HealthSummary(verdict=verdict, samples=0, errors=0, non_finite=0) if verdict else None
    return ModelStatus(name=name, state=state, health=summary)


def summary(conds: list[Condition]) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in conds}


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        ([], {"Ready": ("True", "Converged"), "Healthy": ("True", "WithinThresholds")}),
        (
            [model("a", "Active", "Healthy")],
            {"Ready": ("True", "Converged"), "Healthy": ("True", "WithinThresholds")},
        ),
        (
            [model("a", "Active"), model("b", "Downloading")],
            {
                "Ready": ("False", "Installing"),
                "Reconciling": ("True", "Installing"),
                "Healthy": ("True", "WithinThresholds"),
            },
        ),
        (
            [model("a", "RolledBack", "Unhealthy")],
            {
                "Ready": ("False", "DesiredVersionRejected"),
                "Stalled": ("True", "DesiredVersionRejected"),
                "Healthy": ("False", "HealthThresholdsBroken"),
            },
        ),
        (
            [model("a", "Failed"), model("b", "Pending")],
            {
                "Ready": ("False", "Installing"),
                "Reconciling": ("True", "Installing"),
                "Stalled": ("True", "DesiredVersionRejected"),
                "Healthy": ("True", "WithinThresholds"),
            },
        ),
        (
            [model("a", "Active", "Unhealthy")],
            {"Ready": ("True", "Converged"), "Healthy": ("False", "HealthThresholdsBroken")},
        ),
    ],
)
def test_conditions_table(models: list[ModelStatus], expected: dict[str, tuple[str, str]]) -> None:
    conds = deviceconditions.conditions([], models, 4, T0)
    assert summary(conds) == expected
    assert all(c.observed_generation == 4 and c.last_transition_time == T0 for c in conds)


def test_messages_name_the_models() -> None:
    conds = {
        c.type: c for c in deviceconditions.conditions([], [model("a", "Installing"), model("b", "Failed")], 1, T0)
    }
    assert conds["Reconciling"].message == "installing a"
    assert conds["Stalled"].message == "desired version rejected for b; see status.models[].message"
    assert conds["Ready"].message == "not serving every desired model at its desired digest"


def test_transition_time_moves_only_when_status_changes() -> None:
    first = deviceconditions.conditions([], [model("a", "Active", "Healthy")], 1, T0)
    second = {c.type: c for c in deviceconditions.conditions(first, [model("a", "Active", "Healthy")], 2, T1)}
    assert second["Ready"].last_transition_time == T0 and second["Ready"].observed_generation == 2
    third = {c.type: c for c in deviceconditions.conditions(first, [model("a", "Downloading")], 3, T1)}
    assert third["Ready"].last_transition_time == T1


def test_reconciling_and_stalled_vanish_when_no_longer_true_and_others_stay() -> None:
    foreign = Condition(type="NetworkReachable", status="True", reason="Ping", last_transition_time=T0)
    installing = deviceconditions.conditions([foreign], [model("a", "Downloading"), model("b", "Failed")], 1, T0)
    assert {"Reconciling", "Stalled", "NetworkReachable"} <= {c.type for c in installing}
    done = deviceconditions.conditions(installing, [model("a", "Active"), model("b", "Active")], 2, T1)
    assert {c.type for c in done} == {"Ready", "Healthy", "NetworkReachable"}


def test_messages_are_cut_at_the_device_limit() -> None:
    many = [model(f"model-{i:03d}", "Installing") for i in range(200)]
    conds = {c.type: c for c in deviceconditions.conditions([], many, 1, T0)}
    assert len(conds["Reconciling"].message) == deviceconditions.MAX_MESSAGE
