"""One worker process of a simulated fleet: many real :class:`~edgefleet.edge_reconciler.device.Agent` loops on one
event loop.

Each device is the real agent (registration, Lease heartbeat, a watch on its own EdgeDevice, download, sha256 +
signature verification, install into A/B slots, golden-sample smoke test, switch, health probation, status reports)
with its own state directory and serving registry. What the devices of one process share, so thousands fit on one
machine: one HTTP connection pool to the API server and one to the artifact store, one small inference thread pool,
and one onnxruntime session per model digest (:class:`SharedSessionInstaller`; every device still downloads,
verifies and smoke-tests its own copy). With ``FleetSpec.sockets_dir`` each device also serves its registry over
the agent's own inference server (:class:`edgefleet.adapters.inference_server.Server`) on its own UNIX socket, as
``edgefleet-agent`` does. Every API request is counted (:class:`CountingClient`), and the process writes its
statistics to a JSON file every second for :class:`edgefleet.testing.fleetsim.fleet.Fleet`.

With ``FleetSpec.watch == "hub"`` the devices of a process do not open a watch each: one list-and-watch of the
process's shard (:class:`HubControl`) hands every device its own EdgeDevice, as KubeEdge's cloudcore does for the
edge nodes behind it. Everything else, writes included, stays per device.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pydantic

from edgefleet.adapters import artifacts, bundle, inference_server, informer, kube, oci, onnx_session, protocols
from edgefleet.api.edgedevice import EdgeDeviceSpec, EdgeDeviceStatus
from edgefleet.core.errors import EdgefleetError
from edgefleet.edge_reconciler import capabilities, config, control, device, installer, serving, state
from edgefleet.testing.fleetsim import layout

log = logging.getLogger(__name__)


class CountingClient(kube.Client):
    """The real client, counting requests by verb (``LIST`` and ``WATCH`` apart from ``GET``)."""

    def __init__(self, connection: kube.Connection, session: kube.Session, counts: collections.Counter[str]) -> None:
        super().__init__(connection, session, counts=counts)


class RecordingControl(control.KubeControl):
    """The real EdgeDevice/Lease control, remembering whether it registered and the last status it wrote."""

    registered = False
    last: EdgeDeviceStatus | None = None

    async def register(self, labels: Mapping[str, str]) -> None:
        await super().register(labels)
        self.registered = True

    async def report(self, status: EdgeDeviceStatus) -> None:
        await super().report(status)
        self.last = status


@dataclasses.dataclass(frozen=True)
class Desired:
    """What a device needs from its EdgeDevice: the spec (as sent) and the generation."""

    generation: int | None
    spec: str


def _desired(obj: dict[str, Any]) -> Desired | None:
    """The desired part of an EdgeDevice (pure); the spec is validated by the device that receives it."""
    generation = (obj.get("metadata") or {}).get("generation")
    return Desired(generation if isinstance(generation, int) else None, json.dumps(obj.get("spec") or {}))


class Hub:
    """One list-and-watch of the EdgeDevices labelled with this process's shard, handed out to its devices."""

    def __init__(self, client: kube.Client, namespace: str, shard: str) -> None:
        self.controls: dict[str, HubControl] = {}
        self.cache = informer.Informer(
            client,
            kube.EDGEDEVICES,
            namespace,
            _desired,
            label_selector=f"{layout.SHARD_LABEL}={shard}",
            on_change=self._changed,
        )

    def _changed(self, name: str | None) -> None:
        targets = self.controls.values() if name is None else filter(None, [self.controls.get(name)])
        for target in targets:
            target.changed.set()


class HubControl(RecordingControl):
    """:class:`RecordingControl` whose desired spec comes from the process's :class:`Hub`, not its own watch."""

    def attach(self, hub: Hub) -> None:
        self.hub = hub
        self.changed = asyncio.Event()
        hub.controls[self.name] = self
        if hub.cache.synced.is_set():
            self.changed.set()

    async def specs(self) -> AsyncIterator[tuple[EdgeDeviceSpec, int | None]]:
        last: Desired | None = None
        while True:
            await self.changed.wait()
            self.changed.clear()
            desired = self.hub.cache.get(self.name)
            if desired is None:
                if last is not None and self.hub.cache.synced.is_set():
                    # Deleted under the running device: register again, as the device's own watch would.
                    last = None
                    with contextlib.suppress(EdgefleetError):
                        await self.register(self._labels)
                continue
            if desired == last:
                continue  # the device's own status write coming back
            try:
                spec = EdgeDeviceSpec.model_validate_json(desired.spec)
            except pydantic.ValidationError as exc:
                log.error("Ignored invalid EdgeDevice name=%s error=%s", self.name, exc.errors(include_url=False)[:3])
                continue
            last = desired
            yield spec, desired.generation


class SharedSessionInstaller(installer.Installer):
    """The real installer with one onnxruntime session per model digest for the whole process.

    Download, digest, signature and the golden-sample smoke test still run per device; only the session object that
    a verified, identical model would create again is reused (sessions are thread-safe for ``run``). For files that
    are hard links of one another (devices of a download group, :class:`GroupFetch`), the process also keeps one copy
    in memory, verifies it once and installs it into slots as hard links: thousands of devices then hold a 20 MB model
    once, not once each.
    """

    sessions: dict[str, onnx_session.ModelRuntime] = {}
    by_object: dict[int, tuple[bytes, onnx_session.ModelRuntime]] = {}
    files: collections.OrderedDict[tuple[int, int], bytes] = collections.OrderedDict()
    verified: dict[tuple[str, int], bundle.Bundle] = {}

    def _runtime(self, model: bytes) -> onnx_session.ModelRuntime:
        # A model object of a shared verified bundle is the same object for every device: no need to hash it again.
        known = self.by_object.get(id(model))
        if known is not None and known[0] is model:
            return known[1]
        key = hashlib.sha256(model).hexdigest()
        runtime = self.sessions.get(key)
        if runtime is None:
            runtime = self.sessions[key] = super()._runtime(model)
        if len(self.by_object) > 8:
            self.by_object.clear()
        self.by_object[id(model)] = (model, runtime)
        return runtime

    def read_file(self, path: Path) -> bytes:
        info = path.stat()
        key = (info.st_dev, info.st_ino)
        data = self.files.get(key)
        if data is None or len(data) != info.st_size:
            data = self.files[key] = super().read_file(path)
            while len(self.files) > 4:
                self.files.popitem(last=False)
        return data

    def open_verified(self, data: bytes, digest: str) -> bundle.Bundle:
        shared = any(data is kept for kept in self.files.values())
        key = (digest, id(data))
        opened = self.verified.get(key) if shared else None
        if opened is None:
            opened = super().open_verified(data, digest)
            if shared:
                # The process-wide cache (a class attribute, changed in place): the last verified object per digest.
                for stale in [k for k in self.verified if k[0] == digest or len(self.verified) > 4]:
                    del self.verified[stale]
                self.verified[key] = opened
        return opened

    def write_slot(self, path: Path, data: bytes, source: Path | None) -> None:
        if source is None or not source.exists() or source.stat().st_size != len(data):
            super().write_slot(path, data, source)
            return
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        os.link(source, tmp)
        os.replace(tmp, path)


class GroupFetch:
    """The fetch of one download group: the first device to ask downloads (the real fetcher: mirrors, then origin),
    the others of the group get the same verified file as a hard link. Servers count one download per group."""

    def __init__(self, fetcher: artifacts.Fetcher, cache: Path, group: str) -> None:
        self.fetcher, self.cache, self.group = fetcher, cache, group
        self.jobs: dict[str, asyncio.Future[artifacts.Fetched]] = {}

    async def __call__(
        self,
        uri: str,
        dest: Path,
        size: int,
        *,
        digest: str | None = None,
        on_progress: Callable[[int], None] | None = None,
        max_bytes_per_second: int | None = None,
    ) -> artifacts.Fetched:
        key = digest or uri
        job = self.jobs.get(key)
        if job is None or (job.done() and (job.cancelled() or job.exception() is not None)):
            job = self.jobs[key] = asyncio.ensure_future(self._download(uri, size, digest, max_bytes_per_second))
        fetched = await asyncio.shield(job)
        dest.unlink(missing_ok=True)
        os.link(fetched.path, dest)
        return dataclasses.replace(fetched, path=dest)

    async def _download(self, uri: str, size: int, digest: str | None, rate: int | None) -> artifacts.Fetched:
        name = hashlib.sha256((digest or uri).encode()).hexdigest()
        tmp = self.cache / f"{self.group.replace('/', '-')}-{name}.part"
        fetched = await self.fetcher(uri, tmp, size, digest=digest, max_bytes_per_second=rate)
        shared = self.cache / name
        if shared.exists():
            tmp.unlink(missing_ok=True)
        else:
            os.replace(tmp, shared)
        return dataclasses.replace(fetched, path=shared)


class SimAgent(device.Agent):
    """:class:`device.Agent` with :class:`SharedSessionInstaller`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(installer_type=SharedSessionInstaller, **kwargs)


def _zeros(runtime: onnx_session.ModelRuntime) -> dict[str, np.ndarray[Any, Any]]:
    """An all-zeros input for every model input, symbolic dimensions as 1 (pure)."""
    return {
        spec.name: np.zeros([d if isinstance(d, int) and d > 0 else 1 for d in spec.shape], dtype=np.dtype(spec.dtype))
        for spec in runtime.inputs
    }


async def _load(registry: serving.Registry, rps: float) -> None:
    """A few predictions per second through the device's registry, so health verdicts come from real latency."""
    period = 1.0 / rps
    await asyncio.sleep(random.uniform(0, period))
    while True:
        for loaded in registry.all():
            with contextlib.suppress(onnx_session.InferenceError, KeyError):
                await registry.predict(loaded.name, _zeros(loaded.runtime))
        await asyncio.sleep(period)


def _rss_bytes() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


class Worker:
    """The devices ``first .. first+count-1`` of ``spec`` in this process."""

    def __init__(self, spec: layout.FleetSpec, indexes: range, stats: Path) -> None:
        self.spec = spec
        self.indexes = indexes
        self.stats = stats
        self.counts: collections.Counter[str] = collections.Counter()
        self.controls: list[RecordingControl] = []
        self.started = 0

    def _write_stats(self) -> None:
        reported: collections.Counter[str] = collections.Counter()
        for ctl in self.controls:
            if ctl.last is None or not ctl.last.models:
                reported["-|-|-|-"] += 1
                continue
            for m in ctl.last.models:
                verdict = m.health.verdict if m.health is not None else "-"
                reported[f"{m.name}|{m.active_version or '-'}|{verdict}|{m.state}"] += 1
        body = {
            "pid": os.getpid(),
            "time": time.time(),
            "devices": len(self.indexes),
            "started": self.started,
            "registered": sum(1 for c in self.controls if c.registered),
            "requests": dict(self.counts),
            "reported": dict(reported),
            "rssBytes": _rss_bytes(),
        }
        state.write_atomic(self.stats, json.dumps(body).encode())

    async def _report_stats(self) -> None:
        while True:
            self._write_stats()
            await asyncio.sleep(1.0)

    async def run(self) -> None:
        spec = self.spec
        connection = kube.from_kubeconfig(Path(spec.kubeconfig))
        limit = spec.api_connections or (16 if spec.watch == "hub" else 0)
        http = kube.new_session(limit=limit)
        trust = oci.ssl_context(Path(spec.ca_file) if spec.ca_file else None)
        downloads = artifacts.new_session(limit=32, ssl_context=trust)
        credentials = {}
        if spec.registry_config:
            doc = json.loads(Path(spec.registry_config).read_text())
            credentials = oci.credentials_from_docker_config(doc, spec.registry_config)
        registry_client = oci.Registry(downloads, credentials=credentials)
        fetchers: dict[str, artifacts.Fetcher] = {}
        groups: dict[str, GroupFetch] = {}
        cache = Path(spec.root) / "shared-downloads" / str(self.indexes.start)
        cache.mkdir(parents=True, exist_ok=True)

        def fetch_for(index: int) -> protocols.ArtifactFetch:
            site = layout.labels(spec, index)["edgefleet.io/site"]
            if site not in fetchers:
                mirrors = [
                    artifacts.Mirror(m["url"], tuple(m.get("origins") or ()))
                    for m in (spec.mirrors or {}).get(site, [])
                ]
                fetchers[site] = artifacts.Fetcher(
                    downloads, mirrors=mirrors, registry=registry_client, timeout_seconds=300.0
                )
            if spec.download_group <= 1:
                return fetchers[site]
            group = spec.download_group_of(index)
            if group not in groups:
                groups[group] = GroupFetch(fetchers[site], cache, group)
            return groups[group]

        keys = [bundle.load_public_key(Path(p).read_bytes()) for p in spec.trust_keys]
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=spec.inference_threads, thread_name_prefix="infer")
        caps = capabilities.detect()
        settings = config.AgentSettings(
            max_bundle_bytes=64 * 1024**2,
            lease_duration_seconds=spec.lease_duration_seconds,
            status_interval_seconds=spec.status_interval_seconds,
            health_tick_seconds=spec.health_tick_seconds,
            retry_initial_seconds=spec.retry_initial_seconds,
            retry_max_seconds=spec.retry_max_seconds,
            resync_seconds=spec.resync_seconds,
            verdict_check_seconds=spec.verdict_check_seconds,
            report_coalesce_seconds=spec.report_coalesce_seconds,
        )
        tasks: list[asyncio.Task[None]] = []
        registries: list[serving.Registry] = []
        servers: list[inference_server.Server] = []
        stats_task = asyncio.ensure_future(self._report_stats())
        hub: Hub | None = None
        shard = str(self.indexes.start)
        if spec.watch == "hub":
            hub = Hub(CountingClient(connection, http, self.counts), spec.namespace, shard)
            hub.cache.start()
        try:
            for index in self.indexes:
                name = layout.device_name(spec, index)
                labels = layout.labels(spec, index)
                if hub is not None:
                    labels[layout.SHARD_LABEL] = shard
                ctl = (HubControl if hub is not None else RecordingControl)(
                    CountingClient(connection, http, self.counts),
                    spec.namespace,
                    name,
                    lease_duration_seconds=spec.lease_duration_seconds,
                    retry_initial_seconds=spec.retry_initial_seconds,
                    retry_max_seconds=spec.retry_max_seconds,
                )
                if isinstance(ctl, HubControl) and hub is not None:
                    ctl.attach(hub)
                registry = serving.Registry(executor=pool)
                agent = SimAgent(
                    control=ctl,
                    store=state.Store(Path(spec.root) / "devices" / name),
                    registry=registry,
                    fetch=fetch_for(index),
                    trusted_keys=keys,
                    settings=dataclasses.replace(settings, labels=labels),
                    capabilities=caps,
                )
                self.controls.append(ctl)
                registries.append(registry)
                socket = layout.socket_path(spec, index)
                if socket is not None:
                    server = inference_server.Server(registry, unix_socket=socket)
                    servers.append(server)
                    await server.start()
                tasks.append(asyncio.ensure_future(agent.run()))
                if spec.load_rps > 0:
                    tasks.append(asyncio.ensure_future(_load(registry, spec.load_rps)))
                self.started += 1
                await asyncio.sleep(1.0 / spec.ramp_per_second)
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for server in servers:
                await server.stop()
            stats_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stats_task
            if hub is not None:
                await hub.cache.stop()
            self._write_stats()
            await http.close()
            await downloads.close()
            pool.shutdown(wait=False, cancel_futures=True)


def main(spec_file: Path, first: int, count: int, stats: Path) -> int:
    """Run until SIGTERM/SIGINT, then stop every device and close every connection."""
    spec = layout.FleetSpec.from_json(spec_file.read_text())
    if spec.nice > 0:
        os.nice(spec.nice)
    if spec.switch_interval_seconds is not None:
        sys.setswitchinterval(spec.switch_interval_seconds)
    worker = Worker(spec, range(first, first + count), stats)

    async def body() -> None:
        task = asyncio.ensure_future(worker.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(body())
    log.info("Stopped fleet worker devices=%d at=%s", count, dt.datetime.now(dt.UTC).isoformat())
    return 0


__all__ = [
    "CountingClient",
    "GroupFetch",
    "Hub",
    "HubControl",
    "RecordingControl",
    "SharedSessionInstaller",
    "SimAgent",
    "Worker",
    "main",
]
