"""Compile jobs: the compile of one revision of one deployment, running in the background.

Compiling takes seconds to minutes (a process pool does the work), and kopf runs one handler per object at a time, so a
reconcile never waits for a compile. When the plan asks for a compile, the reconcile starts the job (or finds it
running), reports ``Compiling`` and returns; the job compiles, publishes the signed bundles and stores the revision's
template, and when it ends the deployment is reconciled again (``on_done``). That next pass observes the outcome: the
stored template, or the failure, which it records in status. A job's outcome stays here until a pass has recorded it
(:meth:`CompileJobs.release`), so a pass that fails after observing it loses nothing.

Jobs are keyed by (namespace, deployment, revision): a job of a superseded revision runs on and stores its template
(harmless, and reused if the spec returns to it), but nothing waits for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from edgefleet.api import modeldeployment
from edgefleet.core import errors
from edgefleet.operator import compilation


class Stage(Protocol):
    """What a compile job needs of :class:`~edgefleet.operator.compilation.CompileStage`: its one call."""

    async def compile(
        self, spec: modeldeployment.ModelDeploymentSpec, owner: tuple[str, str] | None = None
    ) -> compilation.Published:
        """Compile every target of ``spec`` (of the deployment ``owner``: namespace, name), sign and publish the
        bundles; raise InvalidSpecError/TransientError."""
        ...


@dataclasses.dataclass(frozen=True)
class JobKey:
    """Which compile: one revision of one deployment."""

    namespace: str
    deployment: str
    revision: str


@dataclasses.dataclass(frozen=True)
class Running:
    """The compile has not ended yet."""


@dataclasses.dataclass(frozen=True)
class Succeeded:
    """The compile ended and the template is stored."""

    published: compilation.Published


@dataclasses.dataclass(frozen=True)
class Failed:
    """The compile (or storing its template) failed."""

    error: errors.TransientError | errors.InvalidSpecError


JobState = Running | Succeeded | Failed


@dataclasses.dataclass(frozen=True, eq=False)
class CompileJob:
    """One compile, started for ``generation`` of the deployment's spec."""

    key: JobKey
    generation: int | None
    task: asyncio.Task[compilation.Published]

    def state(self) -> JobState:
        """Where the job stands (a finished job's state never changes)."""
        if not self.task.done():
            return Running()
        if self.task.cancelled():
            return Failed(errors.TransientError(f"the compile of revision {self.key.revision} was cancelled"))
        exc = self.task.exception()
        if exc is None:
            return Succeeded(self.task.result())
        return Failed(classify(exc))


def classify(exc: BaseException) -> errors.TransientError | errors.InvalidSpecError:
    """A job's failure as the reconcile reports it: a classified error stays; anything else is worth retrying."""
    if isinstance(exc, errors.TransientError | errors.InvalidSpecError):
        return exc
    if isinstance(exc, errors.EdgefleetError):
        return errors.InvalidSpecError(str(exc))
    return errors.TransientError(f"the compile job failed: {type(exc).__name__}: {exc}", delay=60.0)


class CompileJobs:
    """The compile jobs of this operator process; ``on_done(key)`` is called when one ends."""

    def __init__(self, on_done: Callable[[JobKey], None] | None = None) -> None:
        self.on_done = on_done
        self._jobs: dict[JobKey, CompileJob] = {}

    def find(self, key: JobKey) -> CompileJob | None:
        """The job of ``key`` (running, or finished and not yet released)."""
        return self._jobs.get(key)

    def start(
        self,
        key: JobKey,
        generation: int | None,
        work: Callable[[], Coroutine[Any, Any, compilation.Published]],
    ) -> CompileJob:
        """The running job of ``key``, or a new one running ``work()`` (which replaces a finished one)."""
        job = self._jobs.get(key)
        if job is not None and not job.task.done():
            return job
        task = asyncio.create_task(work(), name=f"compile {key.namespace}/{key.deployment} {key.revision}")
        job = self._jobs[key] = CompileJob(key, generation, task)
        task.add_done_callback(lambda t: self._ended(key, t))
        return job

    def _ended(self, key: JobKey, task: asyncio.Task[compilation.Published]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved here: the next pass reads it through state(), or nobody needs it
        if self.on_done is not None and key in self._jobs and self._jobs[key].task is task:
            self.on_done(key)

    def release(self, job: CompileJob) -> None:
        """Forget a finished job whose outcome a pass has recorded (a newer job of the same key stays)."""
        if job.task.done() and self._jobs.get(job.key) is job:
            del self._jobs[job.key]

    def prune(self, namespace: str, deployment: str, keep: str) -> None:
        """Forget the finished jobs of this deployment's other revisions: no pass will record them."""
        for key, job in list(self._jobs.items()):
            if (key.namespace, key.deployment) == (namespace, deployment) and key.revision != keep:
                self.release(job)

    async def cancel(self, namespace: str | None = None, deployment: str | None = None) -> None:
        """Stop and forget the jobs of one deployment (on deletion), or all of them (``namespace`` None)."""
        chosen = [
            key for key in self._jobs if namespace is None or (key.namespace, key.deployment) == (namespace, deployment)
        ]
        tasks = [self._jobs.pop(key).task for key in chosen]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["CompileJob", "CompileJobs", "Failed", "JobKey", "JobState", "Running", "Stage", "Succeeded", "classify"]
