"""Following a rollout until it ends, for people (live redraw) and CI jobs (exit codes, plain frames).

Exit codes of ``edgefleet rollout status --watch`` and ``edgefleet status NAME --watch``:

====  ==================================================================================================
0     the rollout is complete: Healthy, no canary, and the status describes the current generation
1     it failed: RolledBack, Degraded or Stalled (for the current generation)
2     usage error (argparse)
3     ``--timeout`` passed first
====  ==================================================================================================

A status written for an older generation never ends the wait: right after ``kubectl apply`` of a new version the
old ``Healthy`` is still there until the operator has seen the change.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import RenderableType
from rich.live import Live

from edgefleet.api import modeldeployment
from edgefleet.cli import tables

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 3
FAILED = ("RolledBack", "Degraded", "Stalled")


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``10m`` or ``2h`` (argparse type; pure).

    >>> parse_duration("90"), parse_duration("10m"), parse_duration("1.5h")
    (90.0, 600.0, 5400.0)
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if match is None:
        import argparse

        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use seconds or 30s, 10m, 2h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def outcome(md: modeldeployment.ModelDeployment) -> int | None:
    """EXIT_OK, EXIT_FAILED, or None while the rollout goes on (pure)."""
    status = md.status
    if status is None or status.observed_generation is None:
        return None
    if md.metadata.generation is not None and status.observed_generation < md.metadata.generation:
        return None
    if status.phase in FAILED:
        return EXIT_FAILED
    if status.phase == "Healthy" and status.canary_revision is None:
        return EXIT_OK
    return None


async def follow(
    fetch: Callable[[], Awaitable[tuple[Any, RenderableType | str, int | None]]],
    *,
    interval: float,
    timeout: float | None,
    json_output: bool,
    what: str,
) -> int:
    """Redraw ``fetch()``'s view every ``interval`` s until it reports an outcome or ``timeout`` passes.

    ``fetch`` returns (data for JSON, a view, outcome or None). On a terminal the view is redrawn in place; elsewhere
    each changed frame is printed once (as ``kubectl get -w`` does), or one JSON line per poll with ``-o json``.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    live: Live | None = None
    last_frame = None
    try:
        while True:
            data, view, result = await fetch()
            if json_output:
                print(json.dumps(data, sort_keys=True, default=str), flush=True)
            elif tables.is_terminal():
                if live is None:
                    live = Live(view, console=tables.console(), refresh_per_second=4)
                    live.start()
                else:
                    live.update(view)
            elif str(view) != last_frame:
                last_frame = str(view)
                print(last_frame, flush=True)
            if result is not None:
                return result
            if deadline is not None and time.monotonic() >= deadline:
                print(f"error: timed out after {timeout:g}s waiting for {what}", file=sys.stderr)
                return EXIT_TIMEOUT
            await asyncio.sleep(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))
    finally:
        if live is not None:
            live.stop()


__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_TIMEOUT", "FAILED", "follow", "outcome", "parse_duration"]
