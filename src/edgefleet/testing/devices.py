"""Simulated device agents for control-plane tests: they read ``spec.models`` and write ``status.models``.

Each simulated device does what the edge agent reports, without running a model: it makes its desired entry active and
reports a health verdict chosen by the test (per revision), through the real API server's status subresource. It also
records every revision each device was ever asked to run, so a test can prove that devices outside the canary never
received a bad version.

The test thread and the background thread share one :class:`edgefleet.adapters.kube.Client`, which runs on an event
loop of its own thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from edgefleet.adapters import kube

T = TypeVar("T")


@dataclasses.dataclass
class SimulatedFleet:
    """A background thread playing every EdgeDevice of a namespace."""

    kubeconfig: Path
    namespace: str
    verdict: Callable[[str, str], str] = lambda _device, _revision: "Healthy"
    interval: float = 0.3
    refresh_seconds: float = 5.0
    """Verdicts are re-evaluated this often even when unchanged, as a live agent does every health window."""
    seen: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    _stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    errors: list[str] = dataclasses.field(default_factory=list)
    created: set[str] = dataclasses.field(default_factory=set)
    """The devices this fleet plays; others (real agents) in the namespace are left alone."""
    agent_conditions: bool = False
    """Also write ``observedGeneration`` and the conditions the agent derives from its models
    (:func:`edgefleet.core.deviceconditions.conditions`, the agent's own function)."""

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="simulated-fleet-api", daemon=True)
        self._loop_thread.start()
        self._client = self._call(self._connect())

    async def _connect(self) -> kube.Client:
        return kube.connect(kube.from_kubeconfig(self.kubeconfig))  # its session belongs to the API thread's loop

    def _call(self, call: Coroutine[Any, Any, T]) -> T:
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(call, self._loop)
        return future.result(timeout=60)

    def create(self, name: str, labels: dict[str, str]) -> None:
        body = {
            "apiVersion": kube.EDGEDEVICES.api_version,
            "kind": "EdgeDevice",
            "metadata": {"name": name, "labels": labels},
            "spec": {"models": []},
        }
        self._call(self._client.create(kube.EDGEDEVICES, self.namespace, body))
        self.created.add(name)

    def start(self) -> SimulatedFleet:
        self._thread = threading.Thread(target=self._run, name="simulated-fleet", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._call(self._client.close())  # its connection pool would otherwise be left to the garbage collector
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(timeout=10)
        self._loop.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as exc:
                self.errors.append(repr(exc))
            self._stop.wait(self.interval)

    def devices(self) -> list[dict[str, Any]]:
        return self._call(self._client.list(kube.EDGEDEVICES, self.namespace)).items

    def desired(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for device in self.devices():
            models = (device.get("spec") or {}).get("models") or []
            out[device["metadata"]["name"]] = models[0]["revision"] if models else None
        return out

    def step(self) -> None:
        now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        for device in self.devices():
            name = device["metadata"]["name"]
            if name not in self.created:
                continue
            models = (device.get("spec") or {}).get("models") or []
            reports = []
            for entry in models:
                self.seen.setdefault(name, set()).add(entry["revision"])
                verdict = self.verdict(name, entry["revision"])
                reports.append(
                    {
                        "name": entry["name"],
                        "state": "Active",
                        "desiredDigest": entry["artifact"]["digest"],
                        "activeVersion": entry["version"],
                        "activeDigest": entry["artifact"]["digest"],
                        "activeRevision": entry["revision"],
                        "health": {
                            "verdict": verdict,
                            "samples": 80,
                            "errors": 0 if verdict == "Healthy" else 40,
                            "reason": None if verdict == "Healthy" else "error rate 0.50 > 0.01",
                            "evaluatedAt": now,
                        },
                    }
                )
            current = ((device.get("status") or {}).get("models")) or []
            if _strip(current) == _strip(reports) and not _stale(current, self.refresh_seconds):
                continue
            patch: dict[str, Any] = {"status": {"models": reports}}
            if self.agent_conditions:
                patch["status"].update(_agent_conditions(device, reports))
            self._call(self._client.merge_patch(kube.EDGEDEVICES, self.namespace, name, patch, "status"))


def _agent_conditions(device: dict[str, Any], reports: list[dict[str, Any]]) -> dict[str, Any]:
    from edgefleet.api import common, edgedevice
    from edgefleet.core import deviceconditions

    status = device.get("status") or {}
    previous = [common.Condition.model_validate(c) for c in status.get("conditions") or []]
    models = [edgedevice.ModelStatus.model_validate(r) for r in reports]
    generation = device["metadata"].get("generation")
    conds = deviceconditions.conditions(previous, models, generation, dt.datetime.now(dt.UTC))
    return {"observedGeneration": generation, "conditions": [c.to_wire() for c in conds]}


def _stale(reports: list[dict[str, Any]], seconds: float) -> bool:
    now = dt.datetime.now(dt.UTC)
    for report in reports:
        stamp = (report.get("health") or {}).get("evaluatedAt")
        if stamp is None or now - dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")) > dt.timedelta(
            seconds=seconds
        ):
            return True
    return False


def _strip(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for report in reports:
        copy = dict(report)
        health = dict(copy.get("health") or {})
        health.pop("evaluatedAt", None)
        health = {k: v for k, v in health.items() if v is not None}
        copy["health"] = health
        out.append(copy)
    return out
