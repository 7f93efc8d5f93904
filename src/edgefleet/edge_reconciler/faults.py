"""Named crash points for crash-safety tests: ``EDGEFLEET_AGENT_CRASH_AT=<step>`` makes the agent ``SIGKILL``
itself when it reaches that step, exactly as a power cut would stop it there (after skipping the first
``EDGEFLEET_AGENT_CRASH_SKIP`` times, so a test can let a first install through and cut the second).

Steps (see :mod:`edgefleet.edge_reconciler.device` for where each sits):

``download``  after part of the bundle was written to ``downloads/<digest>.part``
``verify``    after the bundle was read back for verification, before the slot is written
``install``   half-way through writing the inactive slot's temporary file
``switch``    after the journal committed the switch, before the new session serves
``rollback``  after the journal committed the rollback, before the previous session serves

Unset (production), :func:`reached` is a dictionary lookup and returns.
"""

from __future__ import annotations

import os
import signal

ENV = "EDGEFLEET_AGENT_CRASH_AT"
SKIP_ENV = "EDGEFLEET_AGENT_CRASH_SKIP"
STEPS = ("download", "verify", "install", "switch", "rollback")


_seen: dict[str, int] = {}


def reached(step: str) -> None:
    """Kill the process with SIGKILL if the crash point ``step`` is armed (and its skips are used up)."""
    if os.environ.get(ENV) != step:
        return
    count = _seen.get(step, 0)
    _seen[step] = count + 1
    if count >= int(os.environ.get(SKIP_ENV, "0")):
        os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["ENV", "SKIP_ENV", "STEPS", "reached"]
