"""Compile jobs: one per deployment and revision, their outcome kept until a pass records it."""

from __future__ import annotations

import asyncio

import pytest

from edgefleet.core import errors
from edgefleet.operator import compilation, compilejobs
from edgefleet.testing import rollout as sim

KEY = compilejobs.JobKey("plant", "weld", "1.0.0-abc")


def published() -> compilation.Published:
    return compilation.Published(sim.template(sim.spec()), (), 0.5)


async def test_a_job_runs_once_reports_its_end_and_keeps_its_outcome_until_released() -> None:
    ended: list[compilejobs.JobKey] = []
    gate = asyncio.Event()
    registry = compilejobs.CompileJobs(on_done=ended.append)

    async def work() -> compilation.Published:
        await gate.wait()
        return published()

    job = registry.start(KEY, 3, work)
    assert registry.start(KEY, 4, work) is job, "a running job is found, not started again"
    assert isinstance(job.state(), compilejobs.Running) and job.generation == 3
    gate.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert ended == [KEY] and isinstance(job.state(), compilejobs.Succeeded)
    assert registry.find(KEY) is job
    registry.release(job)
    assert registry.find(KEY) is None


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (errors.InvalidSpecError("int8 drop", errors.Reason.ACCURACY_GATE_FAILED), errors.InvalidSpecError),
        (errors.TransientError("worker died"), errors.TransientError),
        (errors.IntegrityError("digest"), errors.InvalidSpecError),
        (RuntimeError("bug"), errors.TransientError),
    ],
)
async def test_a_failed_job_carries_a_classified_error(raised: Exception, kind: type[Exception]) -> None:
    registry = compilejobs.CompileJobs()

    async def work() -> compilation.Published:
        raise raised

    job = registry.start(KEY, 1, work)
    await asyncio.sleep(0)
    state = job.state()
    assert isinstance(state, compilejobs.Failed) and isinstance(state.error, kind)


async def test_a_finished_job_is_replaced_and_releasing_the_old_one_keeps_the_new() -> None:
    registry = compilejobs.CompileJobs()

    async def fail() -> compilation.Published:
        raise errors.TransientError("once")

    old = registry.start(KEY, 1, fail)
    await asyncio.sleep(0)

    async def work() -> compilation.Published:
        return published()

    new = registry.start(KEY, 1, work)
    assert new is not old
    registry.release(old)
    assert registry.find(KEY) is new


async def test_other_revisions_are_pruned_once_finished_and_deletion_cancels() -> None:
    registry = compilejobs.CompileJobs()
    gate = asyncio.Event()

    async def work() -> compilation.Published:
        await gate.wait()
        return published()

    async def quick() -> compilation.Published:
        return published()

    running = registry.start(compilejobs.JobKey("plant", "weld", "2.0.0-def"), 1, work)
    registry.start(compilejobs.JobKey("plant", "weld", "3.0.0-fed"), 1, quick)
    await asyncio.sleep(0)
    registry.prune("plant", "weld", keep=KEY.revision)
    assert registry.find(compilejobs.JobKey("plant", "weld", "3.0.0-fed")) is None
    assert registry.find(running.key) is running, "a running job of another revision is left to finish"
    await registry.cancel("plant", "weld")
    assert registry.find(running.key) is None and running.task.cancelled()
