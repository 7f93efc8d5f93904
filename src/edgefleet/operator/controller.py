"""The running operator: its connections, artifact store, compile pool and trigger schedule, and the reporting of
every reconcile. It knows nothing of kopf; :mod:`edgefleet.operator.handlers` wires kopf to it.

:meth:`Controller.converge` runs one :func:`~edgefleet.operator.reconcile.reconcile_model_deployment` at a time per
deployment (a per-object lock, whichever trigger called it), then reports the pass: Kubernetes events, structured
logs and metrics. A failed pass's classified error is raised after its report, for the caller to map (kopf's
temporary/permanent errors; a retry delay for the trigger schedule).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import multiprocessing
import time
from collections.abc import Callable, Mapping
from typing import Any

from edgefleet.adapters import fleet, gitwriteback, kube, oci, store
from edgefleet.api import modeldeployment
from edgefleet.core import errors
from edgefleet.operator import compilation, compilejobs, devicebench, metrics, reconcile, settings, triggers

Log = logging.Logger | logging.LoggerAdapter[Any]
TRIGGER_LOG = logging.getLogger("edgefleet.operator.triggers")
log = logging.getLogger(__name__)
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


def pairs(**values: Any) -> str:
    """``key=value`` pairs for a log line, leaving out None (pure)."""
    return " ".join(f"{k}={v}" for k, v in values.items() if v is not None)


def verb(reason: str) -> str:
    """The past-tense verb of an event reason for a log line (pure).

    >>> verb("Promoted"), verb("AccuracyGateFailed"), verb("Custom")
    ('Promoted', 'Failed to compile', 'Custom')
    """
    if reason in _VERBS:
        return _VERBS[reason]
    known = reason in errors.Reason.__members__.values()
    return "Failed to compile" if known and errors.Reason(reason).is_compile_failure else reason


async def _registry_store(config: settings.OperatorSettings, api: kube.Client) -> oci.OciStore:
    """The OCI registry backend, with credentials from the configured Secret (read once, at start)."""
    assert config.oci_repository is not None
    host = config.oci_repository.split("/", 1)[0]
    credentials = {}
    if config.oci_secret is not None:
        namespace, _, name = config.oci_secret.partition("/")
        credentials = await fleet.registry_credentials(api, namespace, name, host)
    log.info(
        "Configured registry artifact store %s",
        pairs(repository=config.oci_repository, secret=config.oci_secret, hosts=",".join(sorted(credentials)) or None),
    )
    return oci.OciStore(
        config.oci_repository, credentials=credentials, ca_file=config.oci_ca_file, plain_http=config.oci_plain_http
    )


class Controller:
    """The operator's state for as long as it runs (see the module docstring)."""

    def __init__(
        self,
        config: settings.OperatorSettings,
        api: kube.Client,
        artifacts: store.ArtifactStore,
        runner: Any,
        pool: concurrent.futures.Executor,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.settings = config
        self.api = api
        self.artifacts = artifacts
        self.runner = runner
        self.pool = pool
        self.triggers = triggers.Triggers(config.react_seconds, self._triggered)
        self.compile_jobs = compilejobs.CompileJobs(
            on_done=lambda key: self.triggers.deployment_changed(key.namespace, key.deployment)
        )
        self.deps = reconcile.Deps(
            api=api,
            devices=fleet.Devices(api, clock),
            templates=fleet.Revisions(api),
            compile_jobs=self.compile_jobs,
            compile_stage=self._compile_stage,
            clock=clock,
            write_back=self._write_back if config.write_back is not None else None,
        )
        self.locks: dict[str, asyncio.Lock] = {}
        self._stage: compilation.CompileStage | None = None

    async def _write_back(
        self,
        md: modeldeployment.ModelDeployment,
        status: modeldeployment.ModelDeploymentStatus,
        now: dt.datetime,
    ) -> modeldeployment.RollbackWriteBack:
        """Git and the forge in a thread: a clone and a push must not stall the other deployments' reconciles."""
        assert self.settings.write_back is not None
        return await asyncio.to_thread(gitwriteback.revert, self.settings.write_back, md, status, now)

    @classmethod
    async def start(cls, config: settings.OperatorSettings) -> Controller:
        """Connect, serve the artifact store, start the compile pool, the device watch and the trigger loop."""
        api = kube.connect(kube.default_connection(config.kubeconfig))
        local = store.LocalStore(config.store_dir, config.store_url)
        # The embedded store always serves /healthz and /metrics (and the bundles published while it was the
        # backend, which stable revisions may still name).
        runner = await store.serve(local, config.store_host, config.store_port, metrics=True)
        artifacts: store.ArtifactStore = local
        if config.artifact_backend == "oci":
            artifacts = await _registry_store(config, api)
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=config.compile_workers, mp_context=multiprocessing.get_context("spawn")
        )
        controller = cls(config, api, artifacts, runner, pool)
        if config.watch_devices:
            controller.deps.devices.watch(controller.triggers.devices_changed)
        loop = asyncio.create_task(controller.triggers.loop(), name="edgefleet triggers")
        controller.triggers.tasks.add(loop)
        return controller

    @property
    def store_port(self) -> int:
        """The port the artifact store listens on."""
        return store.bound_port(self.runner)

    async def stop(self) -> None:
        """Stop the triggers, the compile jobs, the watches, the store and the pool."""
        await self.triggers.close()
        await self.compile_jobs.cancel()
        await self.deps.devices.close()
        await self.runner.cleanup()
        if isinstance(self.artifacts, oci.OciStore):
            await self.artifacts.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        await self.api.close()

    async def _compile_stage(self) -> compilejobs.Stage:
        """The compile stage, made once the signing key can be read."""
        if self._stage is None:
            namespace, name = self.settings.signing_secret_ref
            try:
                key = await fleet.signing_key(self.api, namespace, name)
            except errors.EdgefleetError as exc:
                # Without a key nothing can be compiled, but rollouts of compiled revisions go on.
                log.warning("Failed to load signing key %s", pairs(error=str(exc)))
                raise
            benchmarks = devicebench.DeviceBenchmarks(
                self.api,
                self.deps.devices,
                per_class=self.settings.benchmark_devices,
                timeout_seconds=self.settings.benchmark_timeout_seconds,
            )
            self._stage = compilation.CompileStage(
                self.pool,
                self.artifacts,
                key,
                self.settings.compiler,
                memory_budget_bytes=self.settings.compile_memory_bytes,
                benchmarks=benchmarks if self.settings.benchmark_devices > 0 else None,
            )
        return self._stage

    async def converge(self, body: Mapping[str, Any], logger: Log) -> float | None:
        """Reconcile the deployment ``body`` names and report it; returns when to look again.

        Raises the pass's TransientError or InvalidSpecError (after its status patch and report).
        """
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return None
        self.triggers.seen(body)
        lock = self.locks.setdefault(str(meta.get("uid")), asyncio.Lock())
        async with lock:
            began = time.monotonic()
            result = "ok"
            try:
                try:
                    outcome = await reconcile.reconcile_model_deployment(body, self.deps)
                except errors.EdgefleetError as exc:  # reading the deployment failed: nothing to patch
                    outcome = reconcile.Outcome(None, error=reconcile.classify(exc))
                if isinstance(outcome.error, errors.TransientError):
                    result = "retry"
                elif outcome.error is not None:
                    result = "stalled"
            finally:
                metrics.RECONCILE_SECONDS.labels(result).observe(time.monotonic() - began)
        await self._report(body, outcome, logger)
        if outcome.error is not None:
            raise outcome.error
        return outcome.requeue_after

    async def _report(self, body: Mapping[str, Any], outcome: reconcile.Outcome, logger: Log) -> None:
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace"), meta.get("name")
        if outcome.status is not None:
            metrics.observe(namespace or "default", str(name), outcome.status)
        for event in outcome.events:
            metrics.EVENTS.labels(event.reason).inc()
            await self._event(body, event.type, event.reason, event.message)
            emit = logger.warning if event.type == "Warning" else logger.info
            emit(
                "%s ModelDeployment %s",
                verb(event.reason),
                pairs(namespace=namespace, name=name, reason=event.reason, message=event.message),
            )
        if outcome.devices_written:
            logger.info(
                "Updated EdgeDevices %s",
                pairs(
                    namespace=namespace,
                    deployment=name,
                    count=outcome.devices_written,
                    phase=outcome.status.phase if outcome.status is not None else None,
                ),
            )
        error = outcome.error
        if isinstance(error, errors.TransientError):
            logger.warning("Retrying ModelDeployment %s", pairs(delay=error.delay, message=str(error)))
        elif isinstance(error, errors.InvalidSpecError):
            await self._event(body, "Warning", error.reason.value, str(error))
            if outcome.status is None:
                logger.error("Rejected ModelDeployment %s", pairs(error=str(error)))
            else:
                logger.error("Stalled ModelDeployment %s", pairs(reason=error.reason.value, message=str(error)))

    async def _event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        await self.api.record_event(dict(body), type_, reason, message, self.deps.clock())

    async def _triggered(self, ref: dict[str, Any]) -> float | None:
        """A reconcile started by the trigger schedule; returns when to look again (None: on the next trigger)."""
        try:
            return await self.converge(ref, TRIGGER_LOG)
        except errors.TransientError as exc:
            return float(exc.delay or 1.0)
        except errors.InvalidSpecError:
            return None  # Stalled with the reason in status; the spec has to change (kopf's handlers run then)

    async def remove(self, body: Mapping[str, Any], logger: Log) -> None:
        """Remove the model from every device before the deployment goes away; forget it."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace"), meta.get("name")
        await self.compile_jobs.cancel(namespace or "default", str(name))
        try:
            count = await reconcile.remove_from_devices(body, self.deps)
        except errors.InvalidSpecError:
            count = 0  # an unparseable body never wrote to devices; let it go
        metrics.forget(namespace or "default", str(name))
        uid = str(meta.get("uid"))
        self.locks.pop(uid, None)
        self.triggers.forget(uid)
        logger.info("Deleted ModelDeployment %s", pairs(namespace=namespace, name=name, devices=count))


__all__ = ["TRIGGER_LOG", "Controller", "Log", "pairs", "verb"]
