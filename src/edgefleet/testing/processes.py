"""Process checks for the harness's cleanup tests (every child the fleet simulator started is gone afterwards)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """Whether a process with this pid still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
