"""Prints, at the end of a run, how many faults the chaos suite injected and how many invariant checks it made."""

from __future__ import annotations

import pytest

from edgefleet.testing.chaos import invariants


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    counts = invariants.COUNTS
    if not counts:
        return
    faults = {k.removeprefix("fault:"): v for k, v in counts.items() if k.startswith("fault:")}
    checks = {k.removeprefix("check:"): v for k, v in counts.items() if k.startswith("check:")}
    terminalreporter.write_sep("-", "chaos")
    terminalreporter.write_line(
        f"faults injected: {sum(faults.values())} ({', '.join(f'{k}: {v}' for k, v in sorted(faults.items()))})"
    )
    terminalreporter.write_line(
        f"invariant checks made: {sum(checks.values())} ({', '.join(f'{k}: {v}' for k, v in sorted(checks.items()))})"
    )
