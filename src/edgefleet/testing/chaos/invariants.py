"""Invariants every fault-injection test checks after its fault, shared so each check means the same everywhere.

* every device kept answering live inference requests through the fault;
* every device serves a verified model: its inference server (``GET /v1/models``) serves a digest whose bundle,
  fetched from the operator's store, opens with the fleet's trust key and that digest;
* no device ends on a revision that is neither stable nor the promoted canary;
* the rollout reaches a terminal condition, or carries a condition saying why it has not;
* no more than ``maxUnavailable`` devices were off stable at any instant that :class:`AvailabilitySampler` saw;
* no status was lost: each EdgeDevice's reported active model equals what its agent serves locally.

:data:`COUNTS` counts the faults injected and the checks made; ``tests/chaos/conftest.py`` prints it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import threading
import time
import urllib.request
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import aiohttp

from edgefleet.adapters import bundle
from edgefleet.testing import controlplane

COUNTS: collections.Counter[str] = collections.Counter()


def fault(name: str) -> None:
    """Record that the fault ``name`` was injected."""
    COUNTS[f"fault:{name}"] += 1


def _checked(name: str) -> None:
    COUNTS[f"check:{name}"] += 1


def edge_devices(cp: controlplane.ControlPlane, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(cp.kubectl("-n", namespace, "get", "edgedevices", "-o", "json").stdout)[
        "items"
    ]
    return items


def _reported(device: dict[str, Any]) -> dict[str, Any]:
    models: list[dict[str, Any]] = (device.get("status") or {}).get("models") or [{}]
    return models[0]


def _desired(device: dict[str, Any]) -> str | None:
    models: list[dict[str, Any]] = (device.get("spec") or {}).get("models") or [{}]
    return models[0].get("revision")


async def _served(socket: Path) -> list[dict[str, Any]]:
    connector = aiohttp.UnixConnector(path=str(socket))
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as http,
        http.get("http://edge/v1/models") as response,
    ):
        assert response.status == 200, f"{socket}: GET /v1/models answered {response.status}"
        body: dict[str, Any] = await response.json()
        models: list[dict[str, Any]] = body["models"]
        return models


def served(sockets: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """What each agent's inference server says it serves (device name -> the single model's description)."""

    async def all_of() -> list[list[dict[str, Any]]]:
        return list(await asyncio.gather(*(_served(s) for s in sockets.values())))

    out: dict[str, dict[str, Any]] = {}
    for name, models in zip(sockets, asyncio.run(all_of()), strict=True):
        assert len(models) == 1, f"{name} serves {models}, expected exactly one model"
        out[name] = models[0]
    return out


def every_device_serves_a_verified_model(
    sockets: dict[str, Path], trust_key: Any, artifacts: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Each agent serves one model whose digest names a bundle the operator published (``artifacts``: digest ->
    URI) and that bundle opens with ``trust_key`` and that digest.

    A digest the operator never published, or a bundle that does not verify, fails the check."""
    now = served(sockets)
    verified: dict[str, bool] = {}
    for name, model in now.items():
        digest = model["digest"]
        assert digest in artifacts, f"{name} serves {digest}, which no revision of the deployment published"
        if digest not in verified:
            with urllib.request.urlopen(artifacts[digest], timeout=10) as response:
                data = response.read()
            try:
                bundle.open_bundle(data, [trust_key], digest)
                verified[digest] = True
            except bundle.BundleError:
                verified[digest] = False
        assert verified[digest], f"{name} serves {digest}, whose bundle does not verify with the trust key"
    _checked("serves-verified-model")
    return now


def every_device_kept_answering(before: dict[str, int], after: dict[str, int], failed: dict[str, int]) -> None:
    """Live inference traffic was answered by every device between two snapshots (through the fault), and at most
    a few requests in a hundred failed (a request can meet a model switch)."""
    silent = [name for name in after if after[name] <= before.get(name, 0)]
    assert not silent, f"devices stopped answering inference requests: {silent}"
    for name, answered in after.items():
        assert failed.get(name, 0) * 20 <= answered, f"{name}: {failed.get(name)} failed of {answered} answered"
    _checked("kept-answering")


def no_device_off_the_allowed_revisions(cp: controlplane.ControlPlane, namespace: str, status: dict[str, Any]) -> None:
    """Every device's active revision is the stable one, or the canary while that canary is not aborted."""
    allowed: set[str] = {str(status.get("stableRevision"))}
    if status.get("canaryRevision") and status.get("phase") not in ("RolledBack", "Aborted"):
        allowed.add(status["canaryRevision"])
    active = {d["metadata"]["name"]: _reported(d).get("activeRevision") for d in edge_devices(cp, namespace)}
    stray = {n: r for n, r in active.items() if r not in allowed}
    assert not stray, f"devices on revisions neither stable nor promoted canary ({sorted(allowed)}): {stray}"
    _checked("allowed-revisions")


def terminal(status: dict[str, Any]) -> bool:
    """True when the rollout ended: Ready=True (complete) or Stalled=True (rolled back, degraded, gate failed)."""
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    ready = conditions.get("Ready", {})
    stalled = conditions.get("Stalled", {})
    return (ready.get("status") == "True" and not status.get("canaryRevision")) or stalled.get("status") == "True"


def reaches_a_terminal_condition(
    probe: Callable[[], dict[str, Any]], timeout: float, *, why: Callable[[], str] = lambda: ""
) -> dict[str, Any]:
    """Wait for :func:`terminal`; at every poll a rollout not yet terminal must say why in a Reconciling condition."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = probe()
        if terminal(status):
            conditions = {c["type"]: c for c in status.get("conditions") or []}
            assert conditions["Ready"].get("reason") and conditions["Ready"].get("message"), status
            _checked("terminal-condition")
            return status
        if status.get("canaryRevision"):
            reconciling = [c for c in status.get("conditions") or [] if c["type"] == "Reconciling"]
            assert reconciling and reconciling[0].get("message"), f"progressing without a condition: {status}"
        time.sleep(0.3)
    raise AssertionError(f"the rollout did not terminate in {timeout:.0f} s: {json.dumps(status)[:2000]}\n{why()}")


def max_unavailable(value: int | str, total: int) -> int:
    """``maxUnavailable`` in devices, as docs/rollouts.md defines it (percentages round down, at least 1).

    >>> max_unavailable("50%", 5)
    2
    """
    if isinstance(value, str) and value.endswith("%"):
        return max(1, math.floor(int(value[:-1]) * total / 100))
    return max(1, int(value))


class AvailabilitySampler:
    """Lists the EdgeDevices in a background thread and records, per sample, how many are unavailable (asked to run
    a revision other than the one they report active). One list is one consistent etcd snapshot."""

    def __init__(self, cp: controlplane.ControlPlane, namespace: str, interval: float = 0.4) -> None:
        self.cp, self.namespace, self.interval = cp, namespace, interval
        self.samples: list[tuple[float, int, list[str]]] = []
        self.failed: dict[str, str] = {}  # device -> the last message it reported in state Failed or RolledBack
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                devices = edge_devices(self.cp, self.namespace)
            except AssertionError:  # kubectl failed: the API server may be down on purpose; that instant is unsampled
                devices = []
            off = [
                d["metadata"]["name"]
                for d in devices
                if _desired(d) is not None and _desired(d) != _reported(d).get("activeRevision")
            ]
            for d in devices:
                report = _reported(d)
                if report.get("state") in ("Failed", "RolledBack"):
                    self.failed[d["metadata"]["name"]] = str(report.get("message"))
            if devices:
                self.samples.append((time.monotonic(), len(off), off))
            self._stop.wait(self.interval)

    def __enter__(self) -> AvailabilitySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def check(self, limit: int, offline: Collection[str] = ()) -> None:
        """No sample had more than ``limit`` devices off stable, not counting the ``offline`` ones (devices the test
        cut off or powered off: ``maxUnavailable`` counts what the rollout made unavailable, not offline devices)."""
        assert self.samples, "the sampler saw no EdgeDevices"
        counted = [(at, [n for n in off if n not in offline]) for at, _, off in self.samples]
        worst = max(counted, key=lambda s: len(s[1]))
        assert len(worst[1]) <= limit, f"{len(worst[1])} devices unavailable at once (limit {limit}): {worst[1]}"
        COUNTS["check:max-unavailable-samples"] += len(self.samples)
        _checked("max-unavailable")


def no_status_lost(
    cp: controlplane.ControlPlane, namespace: str, sockets: dict[str, Path], timeout: float = 30.0
) -> None:
    """Each EdgeDevice's reported active digest and revision equal what its agent serves (given a little time for
    reports that were buffered while a device was offline)."""
    deadline = time.monotonic() + timeout
    mismatch: dict[str, Any] = {}
    while True:
        local = served(sockets)
        remote = {d["metadata"]["name"]: _reported(d) for d in edge_devices(cp, namespace)}
        mismatch = {
            name: (model["digest"], model["revision"], remote.get(name, {}).get("activeDigest"))
            for name, model in local.items()
            if (remote.get(name, {}).get("activeDigest"), remote.get(name, {}).get("activeRevision"))
            != (model["digest"], model["revision"])
        }
        if not mismatch:
            _checked("no-status-lost")
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"EdgeDevice status differs from what the agents serve: {mismatch}")
        time.sleep(0.5)
