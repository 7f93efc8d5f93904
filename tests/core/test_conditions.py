"""kstatus conditions and maintenance windows: table tests, plus the worked examples in the docstrings."""

from __future__ import annotations

import datetime as dt
import doctest

import pytest

from edgefleet.api import modeldeployment
from edgefleet.core import canary, conditions, revisions, windows
from edgefleet.core.planner import analysis, availability, devices, reachability, rollout, state, steps

T0 = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)
PLANNER_MODULES = [analysis, availability, devices, reachability, rollout, state, steps]


@pytest.mark.parametrize(
    "module",
    [conditions, windows, canary, revisions, *PLANNER_MODULES],
)
def test_worked_examples_in_docstrings_hold(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.failed == 0 and result.attempted > 0


def test_reconciling_and_stalled_exist_only_while_true() -> None:
    first = conditions.kstatus(
        [],
        ready="False",
        ready_reason=conditions.Cause("RolledBack", "bad"),
        reconciling=conditions.Cause("RollingBack", "reverting"),
        stalled=conditions.Cause("RolledBack", "bad"),
        generation=3,
        now=T0,
    )
    assert [c.type for c in first] == ["Ready", "Reconciling", "Stalled"]
    assert all(c.observed_generation == 3 and c.status in ("True", "False") for c in first)
    second = conditions.kstatus(
        first,
        ready="False",
        ready_reason=conditions.Cause("RolledBack", "evidence"),
        reconciling=None,
        stalled=conditions.Cause("RolledBack", "evidence"),
        generation=4,
        now=T1,
    )
    assert [c.type for c in second] == ["Ready", "Stalled"]
    ready = conditions.find(second, "Ready")
    assert ready is not None and ready.last_transition_time == T0, "status unchanged: transition time kept"
    assert ready.message == "evidence" and ready.observed_generation == 4
    third = conditions.kstatus(
        second,
        ready="True",
        ready_reason=conditions.Cause("RolloutComplete"),
        reconciling=None,
        stalled=None,
        generation=4,
        now=T1,
    )
    ready = conditions.find(third, "Ready")
    assert ready is not None and ready.last_transition_time == T1 and [c.type for c in third] == ["Ready"]


def test_foreign_conditions_are_kept_after_the_managed_ones() -> None:
    other = conditions.set_condition([], "example.com/Audited", "True", "Checked", "", 1, T0)
    out = conditions.kstatus(
        other,
        ready="Unknown",
        ready_reason=conditions.Cause("Progressing"),
        reconciling=None,
        stalled=None,
        generation=1,
        now=T0,
    )
    assert [c.type for c in out] == ["Ready", "example.com/Audited"]


WEEKEND_NIGHT = modeldeployment.MaintenanceWindow(days=["Sat"], start="22:00", end="02:00")
BERLIN_MORNING = modeldeployment.MaintenanceWindow(
    days=["Mon", "Tue"], start="06:00", end="07:00", time_zone="Europe/Berlin"
)


@pytest.mark.parametrize(
    ("window", "when", "open_"),
    [
        (WEEKEND_NIGHT, dt.datetime(2026, 1, 10, 21, 59, tzinfo=dt.UTC), False),
        (WEEKEND_NIGHT, dt.datetime(2026, 1, 10, 22, 0, tzinfo=dt.UTC), True),
        (WEEKEND_NIGHT, dt.datetime(2026, 1, 11, 1, 59, tzinfo=dt.UTC), True),
        (WEEKEND_NIGHT, dt.datetime(2026, 1, 11, 2, 0, tzinfo=dt.UTC), False),
        (
            WEEKEND_NIGHT,
            dt.datetime(2026, 1, 12, 1, 0, tzinfo=dt.UTC),
            False,
        ),  # Monday 01:00: Sunday has none
        (BERLIN_MORNING, dt.datetime(2026, 1, 5, 5, 30, tzinfo=dt.UTC), True),  # 06:30 CET
        (BERLIN_MORNING, dt.datetime(2026, 7, 6, 5, 30, tzinfo=dt.UTC), False),  # 07:30 CEST
        (BERLIN_MORNING, dt.datetime(2026, 7, 6, 4, 30, tzinfo=dt.UTC), True),  # 06:30 CEST
    ],
)
def test_maintenance_windows(window: modeldeployment.MaintenanceWindow, when: dt.datetime, open_: bool) -> None:
    assert windows.is_open([window], when) is open_
    opening = windows.next_opening([window], when)
    assert opening is not None and opening > when
    assert windows.is_open([window], opening)
    assert not windows.is_open([window], opening - dt.timedelta(seconds=1))
