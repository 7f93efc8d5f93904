"""The watch-backed cache against the in-memory fake and the real API server: initial list, changes, deletions, own
writes, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from edgefleet.adapters import fleet, informer, kube
from edgefleet.api import edgedevice
from edgefleet.testing import controlplane
from edgefleet.testing.fakekube import FakeKube

Cache = informer.Informer[edgedevice.EdgeDevice]


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


def labels(cache: Cache) -> dict[str, str]:
    return {d.metadata.name: d.metadata.labels.get("app", "") for d in cache.items()}


@contextlib.asynccontextmanager
async def cached(
    cp: controlplane.ControlPlane, namespace: str, on_change: Callable[[str | None], None] | None = None
) -> AsyncIterator[tuple[Cache, kube.Client]]:
    """Device ``a`` created, then a started and filled cache of the namespace's EdgeDevices."""
    cp.kubectl("-n", namespace, "create", "-f", "-", input=device("a"))
    client = kube.connect(kube.from_kubeconfig(cp.kubeconfig))
    cache = informer.Informer(client, kube.EDGEDEVICES, namespace, fleet._parse_device, on_change=on_change).start()
    try:
        await cache.wait_synced(20)
        yield cache, client
    finally:
        await cache.stop()
        await client.close()


async def kubectl(cp: controlplane.ControlPlane, namespace: str, *args: str, body: str | None = None) -> None:
    await asyncio.to_thread(cp.kubectl, "-n", namespace, *args, input=body)


async def test_the_cache_follows_the_fake_and_skips_invalid_objects() -> None:
    api = FakeKube()
    api.put(kube.EDGEDEVICES, "plant", json.loads(device("a")))
    changes: list[str | None] = []
    cache = informer.Informer(api, kube.EDGEDEVICES, "plant", fleet._parse_device, on_change=changes.append).start()
    try:
        await cache.wait_synced(5)
        assert labels(cache) == {"a": "adder"} and changes == [None]
        api.put(kube.EDGEDEVICES, "plant", json.loads(device("b", "other")))
        api.put(kube.EDGEDEVICES, "elsewhere", json.loads(device("c")))
        api.put(kube.EDGEDEVICES, "plant", {"metadata": {"name": "bad"}, "spec": {"models": "not a list"}})
        await api.delete(kube.EDGEDEVICES, "plant", "a")
        await eventually(lambda: labels(cache) == {"b": "other"}, timeout=5)
        assert changes == [None, "b", "bad", "a"] and cache.relists == 1 and cache.events == 3
    finally:
        await cache.stop()


@pytest.mark.controlplane
async def test_the_cache_follows_creates_changes_and_deletes(
    control_plane: controlplane.ControlPlane, namespace: str
) -> None:
    changes: list[str | None] = []
    async with cached(control_plane, namespace, changes.append) as (cache, _):
        assert labels(cache) == {"a": "adder"} and changes == [None]  # the first list
        await kubectl(control_plane, namespace, "create", "-f", "-", body=device("b"))
        await kubectl(control_plane, namespace, "label", "edgedevice", "a", "app=other", "--overwrite")
        await eventually(lambda: labels(cache) == {"a": "other", "b": "adder"})
        await kubectl(control_plane, namespace, "delete", "edgedevice", "b")
        await eventually(lambda: labels(cache) == {"a": "other"})
        assert cache.relists == 1 and cache.events >= 3
        assert {"a", "b"} <= set(changes)


@pytest.mark.controlplane
async def test_an_own_write_is_seen_at_once_and_an_older_event_never_replaces_it(
    control_plane: controlplane.ControlPlane, namespace: str
) -> None:
    async with cached(control_plane, namespace) as (cache, client):
        old: dict[str, Any] = await client.get(kube.EDGEDEVICES, namespace, "a")
        written = await client.merge_patch(kube.EDGEDEVICES, namespace, "a", {"metadata": {"labels": {"app": "mine"}}})
        cache.observe(written)
        assert labels(cache) == {"a": "mine"}  # before the watch delivered it
        cache.observe(old)  # e.g. a late event of the previous version
        assert labels(cache) == {"a": "mine"}
        await asyncio.sleep(0.5)
        assert labels(cache) == {"a": "mine"}


@pytest.mark.controlplane
async def test_the_cache_resumes_after_the_api_server_restarts(
    control_plane: controlplane.ControlPlane, namespace: str
) -> None:
    if control_plane.external:
        pytest.skip("restarts the local API server")
    async with cached(control_plane, namespace) as (cache, _):
        await asyncio.to_thread(control_plane.restart_apiserver)
        await kubectl(control_plane, namespace, "create", "-f", "-", body=device("b"))
        await eventually(lambda: labels(cache) == {"a": "adder", "b": "adder"}, timeout=60)


@pytest.mark.controlplane
async def test_a_cache_of_every_namespace_keys_objects_by_namespace_and_name(
    control_plane: controlplane.ControlPlane, namespace: str
) -> None:
    other = f"{namespace}-b"[:63]
    control_plane.kubectl("create", "namespace", other)
    for ns, app in ((namespace, "first"), (other, "second")):
        control_plane.kubectl("-n", ns, "create", "-f", "-", input=device("same-name", app))
    client = kube.connect(kube.from_kubeconfig(control_plane.kubeconfig))
    cache = informer.Informer(client, kube.EDGEDEVICES, None, fleet._parse_device, key=informer.namespaced_key).start()
    try:
        await cache.wait_synced(20)
        first, second = cache.get(f"{namespace}/same-name"), cache.get(f"{other}/same-name")
        assert first is not None and second is not None
        assert (first.metadata.labels or {})["app"] == "first" and (second.metadata.labels or {})["app"] == "second"
    finally:
        await cache.stop()
        await client.close()
