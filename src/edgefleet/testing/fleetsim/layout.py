"""What a simulated fleet looks like: device names, labels, settings, and how per-process statistics add up.

Everything here is pure, so the launcher, the worker processes and the benchmark agree on one layout.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SHARD_LABEL = "edgefleet.io/sim-shard"
WATCH_MODES = ("device", "hub")
SITES = 4
LINES_PER_SITE = 5
HARDWARE_CLASSES = ("x86", "x86", "arm64")  # weighted: two thirds x86
PLANTS = ("plant-north", "plant-south")
PLANT_LINES = 3
PLANT_HARDWARE_CLASS = "x86-avx2"
LABEL_LAYOUTS = ("spread", "plants")


@dataclasses.dataclass(frozen=True)
class FleetSpec:
    """One simulated fleet (written as JSON for the worker processes).

    The heartbeat and status intervals are the agent's own defaults (``edge_reconciler.config.AgentSettings``),
    which keep steady-state API writes under one per device per minute: a Lease renewal every
    ``lease_duration_seconds / 3`` (100 s) and a status write when something changed, with mere health numbers
    coalesced to one write per ``status_interval_seconds`` (300 s); a changed verdict or state is written at once.
    """

    kubeconfig: str
    namespace: str
    devices: int
    processes: int
    root: str
    trust_keys: tuple[str, ...]
    app: str = "adder"
    prefix: str = "sim"
    load_rps: float = 0.0
    """Synthetic inferences per second per device (0: none) through the device's own serving registry."""
    lease_duration_seconds: int = 300
    status_interval_seconds: float = 300.0
    verdict_check_seconds: float = 2.0
    report_coalesce_seconds: float = 1.0
    resync_seconds: float = 300.0
    retry_initial_seconds: float = 1.0
    retry_max_seconds: float = 30.0
    health_tick_seconds: float = 0.5
    ramp_per_second: float = 50.0
    """Devices started per second per process, so registration does not arrive as one burst."""
    inference_threads: int = 2
    api_connections: int = 0
    """API server connections per worker process (0: 16 with ``watch="hub"``; unlimited with ``watch="device"``,
    where every device's watch holds a connection of its own). Over the limit, requests wait for a free connection
    instead of opening a new one: thousands of devices would otherwise open (and TLS-handshake) a connection per
    concurrent request whenever the API server is slow, and crowd out the operator's spec writes. A hub forwarding
    its devices' writes with bounded concurrency is what KubeEdge's cloudcore does (its own API QPS limits)."""
    nice: int = 0
    """Scheduling niceness of the worker processes. A benchmark sets it so the simulated devices, which on a real
    fleet run on their own CPUs, take only the CPU the control plane (API server, etcd, operator) leaves over."""
    watch: str = "device"
    """Where devices get their desired spec from. ``device``: each device lists and watches its own EdgeDevice, as an
    agent with its own kubeconfig does (the systemd service, or a DaemonSet pod talking to the API server directly).
    ``hub``: one watch per worker process, labelled with the worker's shard, fans the specs out to its devices, as
    KubeEdge does (cloudcore holds the API server watches, each edge node's agent reads through MetaServer). Writes
    (registration, Lease, status) go from every device to the API server in both."""
    sockets_dir: str | None = None
    """Serve each device's registry over the agent's inference server on ``<sockets_dir>/<device>.sock`` (``None``:
    no server, as fleets of thousands need none)."""
    label_layout: str = "spread"
    """``spread``: sites, lines and hardware classes as :func:`labels` describes; ``plants``: the demo's two plants
    of three lines each, every device ``x86-avx2``."""
    log_level: str = "WARNING"
    """Of the worker processes' logs (``<root>/worker-<k>.log``); ``INFO`` logs every install, switch and rollback."""
    offline: int = 0
    """The last ``offline`` devices run in a worker process of their own, so that
    :meth:`edgefleet.testing.fleetsim.fleet.Fleet.power_off_offline` can cut their power at once (SIGKILL): the
    share of a real fleet that is switched off, in maintenance or cut off at any moment."""
    mirrors: dict[str, list[dict[str, Any]]] | None = None
    """Per site (label ``edgefleet.io/site``): the devices' artifact mirrors, ``{"url": ..., "origins": [...]}`` as in
    the agent's config (``artifacts.mirrors``), tried before the origin."""
    ca_file: str | None = None
    """A PEM CA the devices trust for registries and mirrors (``artifacts.caFile``)."""
    registry_config: str | None = None
    """Docker ``config.json``-style registry credentials of the devices (``artifacts.credentialsFile``)."""
    download_group: int = 1
    """Devices of one process and one site that share each download (1: every device downloads its own copy). With
    more, the first of a group to ask fetches the artifact from its source; the others of the group take that
    verified file (hard links); the servers count one download per group."""
    switch_interval_seconds: float | None = None
    """The workers' ``sys.setswitchinterval`` (``None``: Python's 5 ms). The devices of a process share one GIL, so an
    inference finishing while other devices parse requests or verify bundles waits up to this long per busy thread,
    and the device counts the wait as inference latency; 0.001 keeps that near what one agent per process sees."""

    def __post_init__(self) -> None:
        if self.label_layout not in LABEL_LAYOUTS:
            raise ValueError(f"label_layout must be one of {', '.join(LABEL_LAYOUTS)} (got {self.label_layout!r})")

    def download_group_of(self, index: int) -> str:
        """The download group of device ``index``: its site and its place among the site's devices (pure).

        >>> FleetSpec("k", "ns", 10, 1, "/tmp", (), download_group=2).download_group_of(9)
        'site-1/1'
        """
        site = labels(self, index)["edgefleet.io/site"]
        return f"{site}/{(index // SITES) // max(1, self.download_group)}"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FleetSpec:
        raw = json.loads(text)
        raw["trust_keys"] = tuple(raw.get("trust_keys") or ())
        return cls(**raw)


def device_name(spec: FleetSpec, index: int) -> str:
    """``sim-00042`` (pure)."""
    return f"{spec.prefix}-{index:05d}"


def socket_path(spec: FleetSpec, index: int) -> Path | None:
    """Where device ``index`` serves inference, ``None`` without ``sockets_dir`` (pure).

    >>> socket_path(FleetSpec("k", "ns", 10, 1, "/tmp", (), sockets_dir="/run/sim"), 7)
    PosixPath('/run/sim/sim-00007.sock')
    """
    if spec.sockets_dir is None:
        return None
    return Path(spec.sockets_dir) / f"{device_name(spec, index)}.sock"


def labels(spec: FleetSpec, index: int) -> dict[str, str]:
    """Labels of device ``index``, spread round-robin over sites, lines and hardware classes (pure).

    >>> labels(FleetSpec("k", "ns", 10, 1, "/tmp", ()), 7)["edgefleet.io/line"]
    'site-3-line-1'
    >>> sorted(labels(FleetSpec("k", "ns", 10, 1, "/tmp", (), label_layout="plants"), 7).values())
    ['adder', 'line-2', 'plant-south', 'x86-avx2']
    """
    if spec.label_layout == "plants":
        return {
            "app": spec.app,
            "edgefleet.io/site": PLANTS[index % len(PLANTS)],
            "edgefleet.io/line": f"line-{index % PLANT_LINES + 1}",
            "edgefleet.io/hardware-class": PLANT_HARDWARE_CLASS,
        }
    site = index % SITES
    line = (index // SITES) % LINES_PER_SITE
    return {
        "app": spec.app,
        "edgefleet.io/site": f"site-{site}",
        "edgefleet.io/line": f"site-{site}-line-{line}",
        "edgefleet.io/hardware-class": HARDWARE_CLASSES[index % len(HARDWARE_CLASSES)],
    }


def worker_shards(spec: FleetSpec) -> list[range]:
    """The device indexes of each worker process: the devices that stay on spread over ``processes``, then the
    ``offline`` ones in a process of their own (pure).

    >>> worker_shards(FleetSpec("k", "ns", 10, 2, "/tmp", (), offline=2))
    [range(0, 4), range(4, 8), range(8, 10)]
    """
    online = spec.devices - spec.offline
    out = shards(online, spec.processes)
    if spec.offline:
        out.append(range(online, spec.devices))
    return out


def shards(devices: int, processes: int) -> list[range]:
    """Split device indexes into ``processes`` contiguous ranges of near-equal size (pure).

    >>> shards(5, 2)
    [range(0, 3), range(3, 5)]
    """
    processes = max(1, min(processes, devices)) if devices else 1
    base, extra = divmod(devices, processes)
    out, start = [], 0
    for k in range(processes):
        size = base + (1 if k < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The fleet's state added up over every worker process at one instant."""

    at: float
    devices: int
    started: int
    registered: int
    requests: dict[str, int]
    """API requests by verb (GET, LIST, WATCH, POST, PATCH) since each worker started."""
    reported: dict[str, int]
    """Devices by the last status they wrote: ``"<model>|<activeVersion>|<verdict>|<state>"``."""
    rss_bytes: int
    workers: int

    @property
    def writes(self) -> int:
        return sum(v for k, v in self.requests.items() if k in ("POST", "PATCH", "PUT", "DELETE"))

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def count(self, version: str, verdict: str = "Healthy", model: str | None = None) -> int:
        """Devices that last reported ``version`` active with ``verdict`` (pure)."""
        total = 0
        for key, n in self.reported.items():
            name, active, got, _state = key.split("|")
            if active == version and got == verdict and (model is None or name == model):
                total += n
        return total


def combine(parts: Iterable[Mapping[str, Any]], at: float) -> Snapshot:
    """Add up the workers' statistics files (pure).

    >>> combine([{"devices": 2, "started": 2, "registered": 1, "requests": {"GET": 3}, "reported": {},
    ...           "rssBytes": 10}], at=0.0).requests
    {'GET': 3}
    """
    requests: dict[str, int] = {}
    reported: dict[str, int] = {}
    devices = started = registered = rss = workers = 0
    for part in parts:
        workers += 1
        devices += int(part.get("devices", 0))
        started += int(part.get("started", 0))
        registered += int(part.get("registered", 0))
        rss += int(part.get("rssBytes", 0))
        for k, v in (part.get("requests") or {}).items():
            requests[k] = requests.get(k, 0) + int(v)
        for k, v in (part.get("reported") or {}).items():
            reported[k] = reported.get(k, 0) + int(v)
    return Snapshot(at, devices, started, registered, requests, reported, rss, workers)


def read_stats(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The workers' statistics files that exist and parse (a file being replaced is skipped this time)."""
    out = []
    for path in paths:
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return out


__all__ = [
    "SHARD_LABEL",
    "WATCH_MODES",
    "FleetSpec",
    "Snapshot",
    "combine",
    "device_name",
    "labels",
    "read_stats",
    "shards",
    "socket_path",
    "worker_shards",
]
