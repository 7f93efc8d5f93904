"""The async Kubernetes client against a real kube-apiserver: CRUD, server-side apply, status subresource, watch
with bookmarks, Leases, typed errors, and the MetaServer-style plain-HTTP endpoint with a misspelled kind."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from edgefleet.adapters import kube
from edgefleet.api import common
from edgefleet.core.errors import TransientError
from edgefleet.testing.apiproxy import ApiProxy
from edgefleet.testing.controlplane import ControlPlane

pytestmark = pytest.mark.controlplane


@pytest.fixture
async def client(control_plane: ControlPlane) -> AsyncIterator[kube.Client]:
    session = kube.new_session()
    yield kube.Client(kube.from_kubeconfig(control_plane.kubeconfig), session)
    await kube.close_session(session)


def _device(name: str, namespace: str) -> dict[str, object]:
    return {
        "apiVersion": common.API_VERSION,
        "kind": "EdgeDevice",
        "metadata": {"name": name, "namespace": namespace, "labels": {"edgefleet.io/site": "plant-a"}},
        "spec": {"models": []},
    }


async def test_crud_apply_status_watch_and_lease(client: kube.Client, namespace: str) -> None:
    coll = kube.custom_path(common.GROUP, common.VERSION, "edgedevices", namespace)
    created = await client.create(coll, _device("cam-1", namespace), kind="EdgeDevice")
    path = f"{coll}/cam-1"
    assert created["metadata"]["name"] == "cam-1"
    with pytest.raises(kube.ConflictError):
        await client.create(coll, _device("cam-1", namespace))
    with pytest.raises(kube.NotFoundError):
        await client.get(f"{coll}/missing")

    listing = await client.list(coll, field_selector="metadata.name=cam-1", kind="EdgeDevice")
    rv = listing["metadata"]["resourceVersion"]
    assert [i["metadata"]["name"] for i in listing["items"]] == ["cam-1"]
    assert listing["items"][0]["kind"] == "EdgeDevice"

    events: list[kube.WatchEvent] = []

    async def watch() -> None:
        async for event in client.watch(coll, resource_version=rv, field_selector="metadata.name=cam-1"):
            events.append(event)
            if len([e for e in events if e.type == "MODIFIED"]) >= 3:
                return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    patched = await client.merge_patch(path, {"metadata": {"labels": {"edgefleet.io/line": "l2"}}})
    assert patched["metadata"]["labels"] == {"edgefleet.io/site": "plant-a", "edgefleet.io/line": "l2"}
    status = await client.patch_status(path, {"agentVersion": "9.9.9", "models": []})
    assert status["status"]["agentVersion"] == "9.9.9"
    applied = await client.apply(
        path,
        {
            "apiVersion": common.API_VERSION,
            "kind": "EdgeDevice",
            "metadata": {"name": "cam-1", "labels": {"edgefleet.io/hardware-class": "x86-avx2"}},
        },
        field_manager="edgefleet-test",
    )
    assert applied["metadata"]["labels"]["edgefleet.io/hardware-class"] == "x86-avx2"
    assert any(m["manager"] == "edgefleet-test" for m in applied["metadata"]["managedFields"])
    await client.merge_patch(path, {"metadata": {"annotations": {"a": "b"}}})
    await asyncio.wait_for(watcher, 10)
    assert [e.type for e in events if e.type != "BOOKMARK"][:3] == ["MODIFIED", "MODIFIED", "MODIFIED"]
    assert all(e.object["kind"] == "EdgeDevice" for e in events if e.type == "MODIFIED")

    now = dt.datetime.now(dt.UTC)
    lease = await client.renew_lease(namespace, "cam-1", "cam-1", 40, now)
    renewed = await client.renew_lease(namespace, "cam-1", "cam-1", 40, now + dt.timedelta(seconds=10))
    assert lease["spec"]["holderIdentity"] == "cam-1"
    assert renewed["spec"]["renewTime"] > lease["spec"]["renewTime"]
    assert renewed["metadata"]["uid"] == lease["metadata"]["uid"]


async def test_watch_gone_on_expired_resource_version(client: kube.Client, namespace: str) -> None:
    coll = kube.custom_path(common.GROUP, common.VERSION, "edgedevices", namespace)
    with pytest.raises((kube.GoneError, kube.KubeError)):
        async for _ in client.watch(coll, resource_version="1", timeout_seconds=5):
            pass


async def test_plain_endpoint_with_misspelled_kind(control_plane: ControlPlane, namespace: str) -> None:
    proxy = ApiProxy(control_plane.kubeconfig, misspell_kind=True)
    await proxy.up()
    session = kube.new_session()
    try:
        client = kube.Client(kube.plain(proxy.url, namespace), session)
        coll = kube.custom_path(common.GROUP, common.VERSION, "edgedevices", namespace)
        await client.create(coll, _device("cam-2", namespace))
        raw = await client.get(f"{coll}/cam-2")
        assert raw["kind"] == "Edgedevice"  # what MetaServer's cache sends
        fixed = await client.get(f"{coll}/cam-2", kind="EdgeDevice")
        assert fixed["kind"] == "EdgeDevice"
        await proxy.down()
        with pytest.raises(TransientError, match="unreachable"):
            await client.get(f"{coll}/cam-2")
        await proxy.up()
        assert (await client.get(f"{coll}/cam-2", kind="EdgeDevice"))["metadata"]["name"] == "cam-2"
    finally:
        await kube.close_session(session)
        await proxy.close()


async def test_unauthenticated_is_a_clear_error(control_plane: ControlPlane, tmp_path: Path) -> None:
    doc = yaml.safe_load(control_plane.kubeconfig.read_text())
    for user in doc["users"]:
        user["user"] = {}
    anonymous = tmp_path / "kubeconfig"
    anonymous.write_text(yaml.safe_dump(doc))
    session = kube.new_session()
    try:
        client = kube.Client(kube.from_kubeconfig(anonymous), session)
        with pytest.raises(kube.KubeError, match="check the credentials and the RBAC role") as info:
            await client.get(kube.custom_path(common.GROUP, common.VERSION, "edgedevices", "default"))
        assert info.value.status in (401, 403)
    finally:
        await kube.close_session(session)
