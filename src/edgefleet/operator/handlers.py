"""kopf handlers: thin wrappers that call :func:`reconcile.reconcile_model_deployment` and report the outcome.

Create, update, resume and a periodic timer all run the same reconcile (the timer is what notices device status changes,
pause ends and deadlines). A per-object lock keeps the timer and a change handler from reconciling the same deployment
at once. Deletion runs behind the ``edgefleet.io/finalizer`` finalizer and removes the model from every device first.
kopf keeps its bookkeeping in annotations, because the status schema is ours.

Configuration comes from the environment (see ``operator/README.md``): ``EDGEFLEET_STORE_DIR``, ``EDGEFLEET_STORE_URL``,
``EDGEFLEET_STORE_HOST``/``PORT``, ``EDGEFLEET_SIGNING_SECRET`` (``namespace/name``), ``EDGEFLEET_COMPILER``
(``module:function``), ``EDGEFLEET_COMPILE_WORKERS``, ``EDGEFLEET_RESYNC_SECONDS`` and ``KUBECONFIG``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import kopf

from edgefleet.adapters import fleet, kubeapi, store
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
            kubeconfig=env.get("KUBECONFIG") or None,
        )


CONFIG = Config.from_env()


@dataclasses.dataclass
class _State:
    config: Config
    api: kubeapi.KubernetesApi
    artifacts: store.LocalStore
    runner: Any
    pool: concurrent.futures.ProcessPoolExecutor
    deps: reconcile.Deps
    locks: dict[str, asyncio.Lock] = dataclasses.field(default_factory=dict)


_STATE: _State | None = None


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
    api = kubeapi.KubernetesApi(config.kubeconfig)
    artifacts = store.LocalStore(config.store_dir, config.store_url)
    runner = await store.serve(artifacts, config.store_host, config.store_port, metrics=True)
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=config.compile_workers, mp_context=multiprocessing.get_context("spawn")
    )
    deps = reconcile.Deps(api=api, devices=fleet.Fleet(api), templates=fleet.Revisions(api), compiler=None)
    _STATE = _State(config, api, artifacts, runner, pool, deps)
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


async def _reconcile(body: kopf.Body, logger: Log) -> None:
    state = _STATE
    if state is None:
        raise kopf.TemporaryError("the operator is still starting", delay=2)
    if body.get("metadata", {}).get("deletionTimestamp"):
        return
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
        except (errors.InvalidSpecError, kubeapi.ApiRejected) as exc:
            result = "stalled"
            classified = exc if isinstance(exc, errors.InvalidSpecError) else errors.InvalidSpecError(str(exc))
            await _report_failure(state, body, classified, logger)
            raise kopf.PermanentError(str(exc)) from exc
        finally:
            metrics.RECONCILE_SECONDS.labels(result).observe(time.monotonic() - began)
    metrics.observe(namespace, name, outcome.status)
    for event in outcome.events:
        metrics.EVENTS.labels(event.reason).inc()
        kopf.event(body, type=event.type, reason=event.reason, message=event.message[:1024])
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


async def _report_failure(state: _State, body: kopf.Body, error: errors.EdgefleetError, logger: Log) -> None:
    try:
        md = reconcile.parse(body)
    except errors.InvalidSpecError:
        logger.error("Rejected ModelDeployment %s", _pairs(error=str(error)))
        kopf.event(body, type="Warning", reason="InvalidSpec", message=str(error)[:1024])
        return
    status = reconcile.failed_status(md, error, state.deps.clock())
    try:
        await reconcile.write_status(state.deps, md, status)
    except errors.EdgefleetError as exc:
        logger.warning("Failed to write status %s", _pairs(error=str(exc)))
    if isinstance(error, errors.InvalidSpecError):
        kopf.event(body, type="Warning", reason=error.reason, message=str(error)[:1024])
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
    state.locks.pop(str(body.get("metadata", {}).get("uid")), None)
    logger.info("Deleted ModelDeployment %s", _pairs(namespace=namespace, name=name, devices=count))


__all__ = ["CONFIG", "FINALIZER", "Config", "cleanup", "on_change", "on_delete", "on_timer", "startup"]
