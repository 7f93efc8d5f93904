"""When to reconcile a deployment again, apart from kopf's own handlers and timer.

Three things wake a deployment up: a device of its namespace changed (its status is not part of the deployment, so
kopf does not see it), the planner asked to look again (a pause or an analysis window that ends), and its compile
job ended. :class:`Triggers` keeps one pending trigger per deployment and never starts two runs of one deployment at
once; a device change waits :attr:`Triggers.SETTLE_SECONDS` for the rest of its burst and never runs sooner than
``react_seconds`` after the deployment's last reconcile began, so the stream of device events during a rollout of
thousands becomes one reconcile per ``react_seconds``, not one per event.

The scheduling is separate from the loop that waits for it and takes a clock (a monotonic ``() -> seconds``), so it is
testable without waiting: :meth:`Triggers.take_due` and :meth:`Triggers.wait_seconds` are what :meth:`Triggers.loop`
runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Clock = Callable[[], float]
Run = Callable[[dict[str, Any]], Awaitable[float | None]]
"""Reconcile the deployment a reference names; returns when to look again (None: on the next trigger)."""


class Triggers:
    """The reconcile schedule of the deployments this operator has seen (see the module docstring).

    >>> now = [100.0]
    >>> async def run(ref): return None
    >>> triggers = Triggers(react_seconds=1.0, run=run, clock=lambda: now[0])
    >>> triggers.seen({"metadata": {"name": "weld", "namespace": "plant", "uid": "u1"}})
    >>> triggers.devices_changed("plant")  # 0.1 s to settle, but 1 s after the last start at the earliest
    >>> triggers.take_due(), triggers.wait_seconds()
    ([], 1.0)
    >>> now[0] = 101.0
    >>> triggers.take_due()
    ['u1']
    """

    SETTLE_SECONDS = 0.1
    """How long a device change waits for the next ones (an install's phases arrive as a burst)."""

    def __init__(self, react_seconds: float, run: Run, clock: Clock = time.monotonic) -> None:
        self.react_seconds = react_seconds
        self.run = run
        self.clock = clock
        self.known: dict[str, dict[str, Any]] = {}
        self.due: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self.running: set[str] = set()
        self.wake = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def seen(self, body: Mapping[str, Any]) -> None:
        """Remember a deployment whose reconcile starts now (its reference is all a later run needs)."""
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid"))
        self.known[uid] = {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid")},
        }
        self.started[uid] = self.clock()

    def forget(self, uid: str) -> None:
        """A deleted deployment: no more triggers."""
        self.known.pop(uid, None)
        self.due.pop(uid, None)
        self.started.pop(uid, None)

    def at(self, uid: str, delay: float) -> None:
        """Reconcile ``uid`` in ``delay`` seconds (or sooner if already due sooner)."""
        when = max(self.clock() + delay, self.started.get(uid, 0.0) + self.react_seconds)
        self.due[uid] = min(self.due.get(uid, when), when)
        self.wake.set()

    def devices_changed(self, namespace: str) -> None:
        """A device of ``namespace`` changed: reconcile its deployments soon."""
        for uid, ref in self.known.items():
            if ref["metadata"]["namespace"] == namespace and uid not in self.due:
                self.at(uid, self.SETTLE_SECONDS)

    def deployment_changed(self, namespace: str, name: str) -> None:
        """Something the deployment waits for happened (its compile ended): reconcile it as soon as allowed."""
        for uid, ref in self.known.items():
            if (ref["metadata"]["namespace"], ref["metadata"]["name"]) == (namespace, name):
                self.at(uid, 0.0)

    def take_due(self) -> list[str]:
        """The deployments due now and not running, taken off the schedule."""
        now = self.clock()
        ready = [uid for uid, when in self.due.items() if when <= now and uid not in self.running]
        for uid in ready:
            del self.due[uid]
        return ready

    def wait_seconds(self) -> float | None:
        """How long until the next trigger that can run (None: none is scheduled)."""
        waiting = [when for uid, when in self.due.items() if uid not in self.running]
        return max(0.0, min(waiting) - self.clock()) if waiting else None

    async def _one(self, uid: str, ref: dict[str, Any]) -> None:
        self.running.add(uid)
        try:
            again = await self.run(ref)
            if again is not None and uid in self.known:
                self.at(uid, again)
        finally:
            self.running.discard(uid)
            self.wake.set()

    async def loop(self) -> None:
        """Run due reconciles, each in its own task, until cancelled."""
        while True:
            for uid in self.take_due():
                ref = self.known.get(uid)
                if ref is not None:
                    task = asyncio.create_task(self._one(uid, ref))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
            self.wake.clear()
            # Not asyncio.wait_for: on Python 3.11 it can swallow the cancellation that stops this loop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.wait_seconds()):
                    await self.wake.wait()

    async def close(self) -> None:
        """Cancel the loop and the runs in flight."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


__all__ = ["Clock", "Run", "Triggers"]
