"""Tests of the fleet simulator; :func:`alive` is shared by its process-cleanup checks."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """Whether a process with this pid still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
