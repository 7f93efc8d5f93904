"""The watch-backed cache against the real API server: initial list, changes, deletions, own writes, reconnects."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from edgefleet.adapters import controlplane, fleet, informer, kube
from edgefleet.api import edgedevice

pytestmark = pytest.mark.controlplane


def device(name: str, app: str = "adder") -> str:
    return json.dumps(
        {
            "apiVersion": "edgefleet.io/v1alpha1",
            "kind": "EdgeDevice",
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {},
        }
    )


async def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def labels(cache: informer.Informer[edgedevice.EdgeDevice]) -> dict[str, str]:
    return {d.metadata.name: d.metadata.labels.get("app", "") for d in cache.items()}


async def test_the_cache_follows_creates_changes_and_deletes(
    control_plane: controlplane.ControlPlane, namespace: str
) -> None:
    control_plane.kubectl("-n", namespace, "create", "-f", "-", input=device("a"))
    session = kube.new_session()
    changes: list[str | None] = []
    cache = informer.Informer(
        kube.Client(kube.from_kubeconfig(control_plane.kubeconfig), session),
        fleet.EDGEDEVICES.path(namespace),
        fleet._parse_device,
        kind=edgedevice.KIND,
        on_change=changes.append,
    ).start()
    try:
        await cache.wait_synced(20)
        assert labels(cache) == {"a": "adder"} and changes == [None]  # the first list
        await asyncio.to_thread(control_plane.kubectl, "-n", namespace, "create", "-f", "-", input=device("b"))
        await asyncio.to_thread(
            control_plane.kubectl, "-n", namespace, "label", "edgedevice", "a", "app=other", "--overwrite"
        )
        await eventually(lambda: labels(cache) == {"a": "other", "b": "adder"})
        await asyncio.to_thread(control_plane.kubectl, "-n", namespace, "delete", "edgedevice", "b")
        await eventually(lambda: labels(cache) == {"a": "other"})
        assert cache.relists == 1 and cache.events >= 3
        assert {"a", "b"} <= set(changes)
    finally:
        await cache.stop()
        await kube.close_session(session)


async def test_an_own_write_is_seen_at_once_and_an_older_event_never_replaces_it(
    control_plane: controlplane.ControlPlane, namespace: str
) -> None:
    control_plane.kubectl("-n", namespace, "create", "-f", "-", input=device("a"))
    session = kube.new_session()
    client = kube.Client(kube.from_kubeconfig(control_plane.kubeconfig), session)
    cache = informer.Informer(
        client, fleet.EDGEDEVICES.path(namespace), fleet._parse_device, kind=edgedevice.KIND
    ).start()
    try:
        await cache.wait_synced(20)
        old: dict[str, Any] = await client.get(fleet.EDGEDEVICES.path(namespace, "a"), kind=edgedevice.KIND)
        written = await client.merge_patch(
            fleet.EDGEDEVICES.path(namespace, "a"), {"metadata": {"labels": {"app": "mine"}}}, kind=edgedevice.KIND
        )
        cache.observe(written)
        assert labels(cache) == {"a": "mine"}  # before the watch delivered it
        cache.observe(old)  # e.g. a late event of the previous version
        assert labels(cache) == {"a": "mine"}
        await asyncio.sleep(0.5)
        assert labels(cache) == {"a": "mine"}
    finally:
        await cache.stop()
        await kube.close_session(session)


async def test_the_cache_resumes_after_the_api_server_restarts(
    control_plane: controlplane.ControlPlane, namespace: str
) -> None:
    if control_plane.external:
        pytest.skip("restarts the local API server")
    control_plane.kubectl("-n", namespace, "create", "-f", "-", input=device("a"))
    session = kube.new_session()
    cache = informer.Informer(
        kube.Client(kube.from_kubeconfig(control_plane.kubeconfig), session),
        fleet.EDGEDEVICES.path(namespace),
        fleet._parse_device,
        kind=edgedevice.KIND,
    ).start()
    try:
        await cache.wait_synced(20)
        await asyncio.to_thread(control_plane.restart_apiserver)
        await asyncio.to_thread(control_plane.kubectl, "-n", namespace, "create", "-f", "-", input=device("b"))
        await eventually(lambda: labels(cache) == {"a": "adder", "b": "adder"}, timeout=60)
    finally:
        await cache.stop()
        await kube.close_session(session)
