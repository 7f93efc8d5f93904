"""Maintenance windows: weekly time ranges, in a time zone, in which devices may be switched.

A window opens on each of its ``days`` at ``start`` local time and closes at ``end``; an ``end`` before ``start`` means
the window runs overnight into the next day (``Sat 22:00-02:00`` is open Sunday 01:00). Without any window devices may
be switched at any time. Everything here is pure.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence

from edgefleet.api import modeldeployment

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _hhmm(value: str) -> dt.time:
    hours, minutes = value.split(":")
    return dt.time(int(hours), int(minutes))


def _intervals(window: modeldeployment.MaintenanceWindow, around: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """The window's openings that start within a week before or after ``around``, as aware UTC datetimes."""
    zone = zoneinfo.ZoneInfo(window.time_zone)
    local = around.astimezone(zone)
    start, end = _hhmm(window.start), _hhmm(window.end)
    out = []
    for offset in range(-8, 9):
        day = local.date() + dt.timedelta(days=offset)
        if _DAYS[day.weekday()] not in window.days:
            continue
        opens = dt.datetime.combine(day, start, tzinfo=zone)
        closes_day = day if end > start else day + dt.timedelta(days=1)
        closes = dt.datetime.combine(closes_day, end, tzinfo=zone)
        out.append((opens.astimezone(dt.UTC), closes.astimezone(dt.UTC)))
    return out


def is_open(windows: Sequence[modeldeployment.MaintenanceWindow] | None, now: dt.datetime) -> bool:
    """Whether devices may be switched at ``now`` (pure).

    >>> w = modeldeployment.MaintenanceWindow(days=["Sat"], start="22:00", end="02:00")
    >>> is_open([w], dt.datetime(2026, 1, 4, 1, 0, tzinfo=dt.UTC))  # Sunday 01:00, inside Saturday's window
    True
    >>> is_open([w], dt.datetime(2026, 1, 4, 3, 0, tzinfo=dt.UTC))
    False
    >>> is_open(None, dt.datetime(2026, 1, 4, 3, 0, tzinfo=dt.UTC))
    True
    """
    if not windows:
        return True
    return any(opens <= now < closes for w in windows for opens, closes in _intervals(w, now))


def next_opening(windows: Sequence[modeldeployment.MaintenanceWindow] | None, now: dt.datetime) -> dt.datetime | None:
    """When the next window opens after ``now``; None without windows (pure).

    >>> w = modeldeployment.MaintenanceWindow(days=["Sat"], start="22:00", end="02:00")
    >>> next_opening([w], dt.datetime(2026, 1, 4, 3, 0, tzinfo=dt.UTC)).isoformat()
    '2026-01-10T22:00:00+00:00'
    """
    if not windows:
        return None
    openings = [opens for w in windows for opens, _ in _intervals(w, now) if opens > now]
    return min(openings) if openings else None


__all__ = ["is_open", "next_opening"]
