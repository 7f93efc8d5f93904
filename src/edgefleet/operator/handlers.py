"""kopf handlers: thin wrappers that call :func:`reconcile.reconcile_model_deployment` and report the outcome.

Create, update, resume and a periodic timer all run the same reconcile. Device status changes do not change the
ModelDeployment, so the operator also watches the EdgeDevices of every namespace it reconciles (one watch-backed cache
per namespace, :class:`edgefleet.adapters.informer.Informer`) and runs the same reconcile shortly after a device of
that namespace changed (at most once per ``EDGEFLEET_REACT_SECONDS`` per deployment), and when the planner asked to
look again (a pause that ends, an analysis window). The timer remains the safety net (``EDGEFLEET_RESYNC_SECONDS``).
A per-object lock keeps two triggers from reconciling the same deployment at once.

Deletion runs behind the ``edgefleet.io/finalizer`` finalizer and removes the model from every device first.
kopf keeps its bookkeeping in annotations, because the status schema is ours.

Configuration comes from the environment (see ``operator/README.md``): ``EDGEFLEET_STORE_DIR``, ``EDGEFLEET_STORE_URL``,
``EDGEFLEET_STORE_HOST``/``PORT``, ``EDGEFLEET_SIGNING_SECRET`` (``namespace/name``), ``EDGEFLEET_COMPILER``
(``module:function``), ``EDGEFLEET_COMPILE_WORKERS``, ``EDGEFLEET_RESYNC_SECONDS``, ``EDGEFLEET_REACT_SECONDS``,
``EDGEFLEET_WATCH_DEVICES`` (``false``: list the devices on every reconcile instead) and ``KUBECONFIG``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import kopf

from edgefleet.adapters import fleet, kube, store
from edgefleet.api import common, modeldeployment
from edgefleet.core import errors
from edgefleet.operator import compilation, metrics, reconcile

FINALIZER = "edgefleet.io/finalizer"
Log = logging.Logger | logging.LoggerAdapter[Any]
_VERBS = {
    "RolloutStarted": "Started rollout of",
    "StepCompleted": "Completed rollout step of",
    "StepPromoted": "Promoted rollout step of",
    "Promoted": "Promoted",
    "RolloutAborted": "Rolled back",
    "RolloutFailed": "Failed rollout of",
    "Superseded": "Superseded rollout of",
    "Compiled": "Compiled",
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Operator settings, read once from the environment."""

    store_dir: Path
    store_url: str
    store_host: str
    store_port: int
    signing_secret: str
    compiler: str
    compile_workers: int
    resync_seconds: float
    react_seconds: float
    watch_devices: bool
    kubeconfig: str | None

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        port = int(env.get("EDGEFLEET_STORE_PORT", "8080"))
        return cls(
            store_dir=Path(env.get("EDGEFLEET_STORE_DIR", "/var/lib/edgefleet/artifacts")),
            store_url=env.get("EDGEFLEET_STORE_URL", f"http://127.0.0.1:{port}"),
            store_host=env.get("EDGEFLEET_STORE_HOST", "0.0.0.0"),
            store_port=port,
            signing_secret=env.get("EDGEFLEET_SIGNING_SECRET", "edgefleet-system/edgefleet-signing-key"),
            compiler=env.get("EDGEFLEET_COMPILER", compilation.DEFAULT_COMPILER),
            compile_workers=int(env.get("EDGEFLEET_COMPILE_WORKERS", "1")),
            resync_seconds=float(env.get("EDGEFLEET_RESYNC_SECONDS", "10")),
            react_seconds=float(env.get("EDGEFLEET_REACT_SECONDS", "1")),
            watch_devices=env.get("EDGEFLEET_WATCH_DEVICES", "true").lower() not in ("0", "false", "no"),
            kubeconfig=env.get("KUBECONFIG") or None,
        )


CONFIG = Config.from_env()


@dataclasses.dataclass
class _State:
    config: Config
    api: kube.Client
    artifacts: store.LocalStore
    runner: Any
    pool: concurrent.futures.ProcessPoolExecutor
    deps: reconcile.Deps
    locks: dict[str, asyncio.Lock] = dataclasses.field(default_factory=dict)
    triggers: Triggers | None = None


class Triggers:
    """When to reconcile a deployment again, apart from kopf's own handlers: after a device of its namespace changed
    (``react_seconds`` after its last reconcile began, at the earliest) and when the planner asked to look again.

    One pending trigger per deployment and never two runs of one deployment at once, so a stream of device events
    during a rollout of thousands becomes one reconcile per ``react_seconds``, not one per event.
    """

    SETTLE_SECONDS = 0.1
    """How long a device change waits for the next ones (an install's phases arrive as a burst)."""

    def __init__(self, react_seconds: float, run: Callable[[dict[str, Any]], Awaitable[float | None]]) -> None:
        self.react_seconds = react_seconds
        self.run = run
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
        self.started[uid] = time.monotonic()

    def forget(self, uid: str) -> None:
        self.known.pop(uid, None)
        self.due.pop(uid, None)
        self.started.pop(uid, None)

    def at(self, uid: str, delay: float) -> None:
        """Reconcile ``uid`` in ``delay`` seconds (or sooner if already due sooner)."""
        when = max(time.monotonic() + delay, self.started.get(uid, 0.0) + self.react_seconds)
        self.due[uid] = min(self.due.get(uid, when), when)
        self.wake.set()

    def devices_changed(self, namespace: str) -> None:
        for uid, ref in self.known.items():
            if ref["metadata"]["namespace"] == namespace and uid not in self.due:
                self.at(uid, self.SETTLE_SECONDS)

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
        while True:
            now = time.monotonic()
            for uid in [u for u, when in self.due.items() if when <= now and u not in self.running]:
                del self.due[uid]
                ref = self.known.get(uid)
                if ref is not None:
                    task = asyncio.create_task(self._one(uid, ref))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
            waiting = [when for u, when in self.due.items() if u not in self.running]
            self.wake.clear()
            timeout = max(0.0, min(waiting) - time.monotonic()) if waiting else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)


_STATE: _State | None = None
_TRIGGER_LOG = logging.getLogger("edgefleet.operator.triggers")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, logger: Log, **_: Any) -> None:
    """Configure kopf, start the artifact server and the compile pool."""
    global _STATE
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf.edgefleet.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kopf.edgefleet.io", key="last-handled-configuration"
    )
    # Our own events carry every transition; log lines are not turned into events as well.
    settings.posting.level = logging.CRITICAL
    settings.watching.server_timeout = 300
    config = CONFIG
    api = kube.connect(kube.default_connection(config.kubeconfig))
    artifacts = store.LocalStore(config.store_dir, config.store_url)
    runner = await store.serve(artifacts, config.store_host, config.store_port, metrics=True)
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=config.compile_workers, mp_context=multiprocessing.get_context("spawn")
    )
    deps = reconcile.Deps(api=api, devices=fleet.Devices(api), templates=fleet.Revisions(api), compiler=None)
    state = _State(config, api, artifacts, runner, pool, deps)
    if config.watch_devices:
        triggers = Triggers(config.react_seconds, _triggered)
        deps.devices.watch(triggers.devices_changed)
        state.triggers = triggers
        loop_task = asyncio.create_task(triggers.loop(), name="edgefleet triggers")
        triggers.tasks.add(loop_task)
    _STATE = state
    logger.info(
        "Started edgefleet operator store_url=%s store_port=%d compiler=%s",
        config.store_url,
        store.bound_port(runner),
        config.compiler,
    )


@kopf.on.cleanup()
async def cleanup(logger: Log, **_: Any) -> None:
    """Stop the artifact server and the compile pool."""
    global _STATE
    if _STATE is None:
        return
    if _STATE.triggers is not None:
        for task in list(_STATE.triggers.tasks):
            task.cancel()
        await asyncio.gather(*_STATE.triggers.tasks, return_exceptions=True)
    await _STATE.deps.devices.close()
    await _STATE.runner.cleanup()
    _STATE.pool.shutdown(wait=False, cancel_futures=True)
    await _STATE.api.close()
    _STATE = None
    logger.info("Stopped edgefleet operator")


async def _ensure_compiler(state: _State) -> None:
    if state.deps.compiler is not None:
        return
    namespace, _, name = state.config.signing_secret.partition("/")
    key = await fleet.signing_key(state.api, namespace, name)
    state.deps.compiler = compilation.CompileStage(state.pool, state.artifacts, key, state.config.compiler)


def _pairs(**values: Any) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items() if v is not None)


async def _triggered(ref: dict[str, Any]) -> float | None:
    """A reconcile started by :class:`Triggers`; returns when to look again (None: on the next trigger)."""
    try:
        return await _reconcile(ref, _TRIGGER_LOG)
    except kopf.TemporaryError as exc:
        return float(exc.delay or 1.0)
    except kopf.PermanentError:
        return None  # Stalled with the reason in status; the spec has to change (kopf's handlers run then)


async def _reconcile(body: Mapping[str, Any], logger: Log) -> float | None:
    state = _STATE
    if state is None:
        raise kopf.TemporaryError("the operator is still starting", delay=2)
    if body.get("metadata", {}).get("deletionTimestamp"):
        return None
    if state.triggers is not None:
        state.triggers.seen(body)
    uid = str(body.get("metadata", {}).get("uid"))
    lock = state.locks.setdefault(uid, asyncio.Lock())
    namespace, name = body.get("metadata", {}).get("namespace"), body.get("metadata", {}).get("name")
    began = time.monotonic()
    result = "ok"
    async with lock:
        try:
            if state.deps.compiler is None:
                try:
                    await _ensure_compiler(state)
                except errors.EdgefleetError as exc:
                    # Without a key nothing can be compiled, but rollouts of compiled revisions go on.
                    state.deps.compiler_missing = str(exc)
                    logger.warning("Failed to load signing key %s", _pairs(error=str(exc)))
            outcome = await reconcile.reconcile_model_deployment(body, state.deps)
        except errors.TransientError as exc:
            result = "retry"
            await _report_failure(state, body, exc, logger)
            raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
        except errors.InvalidSpecError as exc:
            result = "stalled"
            await _report_failure(state, body, exc, logger)
            raise kopf.PermanentError(str(exc)) from exc
        finally:
            metrics.RECONCILE_SECONDS.labels(result).observe(time.monotonic() - began)
    metrics.observe(namespace, name, outcome.status)
    for event in outcome.events:
        metrics.EVENTS.labels(event.reason).inc()
        await state.api.record_event(dict(body), event.type, event.reason, event.message, state.deps.clock())
        log = logger.warning if event.type == "Warning" else logger.info
        log(
            "%s ModelDeployment %s",
            _VERBS.get(event.reason, event.reason),
            _pairs(namespace=namespace, name=name, reason=event.reason, message=event.message),
        )
    if outcome.devices_written:
        logger.info(
            "Updated EdgeDevices %s",
            _pairs(
                namespace=namespace,
                deployment=name,
                count=outcome.devices_written,
                phase=outcome.status.phase,
            ),
        )
    return outcome.requeue_after


async def _report_failure(state: _State, body: Mapping[str, Any], error: errors.EdgefleetError, logger: Log) -> None:
    try:
        md = reconcile.parse(body)
    except errors.InvalidSpecError:
        logger.error("Rejected ModelDeployment %s", _pairs(error=str(error)))
        await state.api.record_event(dict(body), "Warning", "InvalidSpec", str(error), state.deps.clock())
        return
    status = reconcile.failed_status(md, error, state.deps.clock())
    try:
        await reconcile.write_status(state.deps, md, status)
    except errors.EdgefleetError as exc:
        logger.warning("Failed to write status %s", _pairs(error=str(exc)))
    if isinstance(error, errors.InvalidSpecError):
        await state.api.record_event(dict(body), "Warning", error.reason, str(error), state.deps.clock())
        metrics.observe(md.metadata.namespace or "default", md.metadata.name, status)
        logger.error("Stalled ModelDeployment %s", _pairs(reason=error.reason, message=str(error)))
    elif isinstance(error, errors.TransientError):
        logger.warning("Retrying ModelDeployment %s", _pairs(delay=error.delay, message=str(error)))


_RESOURCE = (common.GROUP, common.VERSION, modeldeployment.PLURAL)


@kopf.on.resume(*_RESOURCE)
@kopf.on.create(*_RESOURCE)
@kopf.on.update(*_RESOURCE)
async def on_change(body: kopf.Body, logger: Log, **_: Any) -> None:
    """Every change of a ModelDeployment: reconcile it."""
    await _reconcile(body, logger)


@kopf.timer(*_RESOURCE, interval=CONFIG.resync_seconds, initial_delay=CONFIG.resync_seconds)
async def on_timer(body: kopf.Body, logger: Log, **_: Any) -> None:
    """Periodic resync: device reports, pause ends and deadlines do not change the ModelDeployment itself."""
    await _reconcile(body, logger)


@kopf.on.delete(*_RESOURCE)
async def on_delete(body: kopf.Body, logger: Log, **_: Any) -> None:
    """Remove the model from every device before the ModelDeployment goes away."""
    state = _STATE
    if state is None:
        raise kopf.TemporaryError("the operator is still starting", delay=2)
    namespace, name = body.get("metadata", {}).get("namespace"), body.get("metadata", {}).get("name")
    try:
        count = await reconcile.remove_from_devices(body, state.deps)
    except errors.TransientError as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
    except errors.InvalidSpecError:
        count = 0  # an unparseable body never wrote to devices; let it go
    metrics.forget(namespace, name)
    uid = str(body.get("metadata", {}).get("uid"))
    state.locks.pop(uid, None)
    if state.triggers is not None:
        state.triggers.forget(uid)
    logger.info("Deleted ModelDeployment %s", _pairs(namespace=namespace, name=name, devices=count))


__all__ = ["CONFIG", "FINALIZER", "Config", "Triggers", "cleanup", "on_change", "on_delete", "on_timer", "startup"]
