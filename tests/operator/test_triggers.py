"""The trigger schedule on a fake clock: settle time, the react limit, one run per deployment at a time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from edgefleet.operator import triggers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _never(_ref: dict[str, Any]) -> float | None:
    return None


def schedule(react: float = 1.0) -> tuple[triggers.Triggers, Clock]:
    clock = Clock()
    t = triggers.Triggers(react, _never, clock)
    for uid, ns, name in (("u1", "plant", "weld"), ("u2", "plant", "paint"), ("u3", "other", "weld")):
        t.seen({"apiVersion": "edgefleet.io/v1alpha1", "kind": "ModelDeployment",
                "metadata": {"uid": uid, "namespace": ns, "name": name, "labels": {"x": "y"}}})  # fmt: skip
    return t, clock


def test_seen_keeps_only_the_reference() -> None:
    t, _ = schedule()
    assert t.known["u1"] == {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "weld", "namespace": "plant", "uid": "u1"},
    }


@pytest.mark.parametrize(
    ("elapsed", "delay", "due_at"),
    [
        (0.0, 0.1, 1.0),  # just started: not before react_seconds after the start
        (5.0, 0.1, 5.1),  # long since started: after the settle time
        (5.0, 30.0, 35.0),  # the planner's own "look again in 30 s"
    ],
)
def test_a_trigger_runs_after_its_delay_but_never_sooner_than_react_seconds_after_the_last_start(
    elapsed: float, delay: float, due_at: float
) -> None:
    t, clock = schedule()
    clock.now += elapsed
    t.at("u1", delay)
    assert t.wait_seconds() == pytest.approx(due_at - elapsed)
    clock.now += due_at - elapsed - 0.01
    assert t.take_due() == []
    clock.now += 0.01
    assert t.take_due() == ["u1"] and t.take_due() == []


def test_a_sooner_trigger_wins_and_a_later_one_does_not_postpone() -> None:
    t, clock = schedule()
    clock.now += 10
    t.at("u1", 30)
    t.at("u1", 2)
    t.at("u1", 60)
    assert t.wait_seconds() == pytest.approx(2)


def test_device_changes_wake_the_deployments_of_that_namespace_once() -> None:
    t, clock = schedule()
    clock.now += 10
    t.devices_changed("plant")
    t.devices_changed("plant")  # a burst: still one pending trigger each
    clock.now += triggers.Triggers.SETTLE_SECONDS
    assert sorted(t.take_due()) == ["u1", "u2"]


def test_a_compile_that_ended_wakes_its_deployment() -> None:
    t, clock = schedule()
    clock.now += 10
    t.deployment_changed("other", "weld")
    assert t.take_due() == ["u3"]


def test_a_running_deployment_is_not_started_twice_and_forgotten_ones_never() -> None:
    t, clock = schedule()
    clock.now += 10
    t.at("u1", 0)
    t.at("u2", 0)
    t.running.add("u1")
    assert t.take_due() == ["u2"] and t.wait_seconds() is None
    t.running.discard("u1")
    assert t.take_due() == ["u1"]
    t.at("u3", 0)
    t.forget("u3")
    assert t.take_due() == [] and "u3" not in t.known


async def test_the_loop_runs_due_reconciles_and_their_requeues() -> None:
    runs: list[str] = []

    async def run(ref: dict[str, Any]) -> float | None:
        runs.append(ref["metadata"]["uid"])
        return 0.05 if len(runs) < 3 else None

    t = triggers.Triggers(0.0, run)
    t.seen({"metadata": {"uid": "u1", "namespace": "plant", "name": "weld"}})
    t.at("u1", 0)
    loop = asyncio.create_task(t.loop())
    t.tasks.add(loop)
    for _ in range(100):
        if len(runs) >= 3:
            break
        await asyncio.sleep(0.02)
    await t.close()
    assert runs == ["u1", "u1", "u1"]
