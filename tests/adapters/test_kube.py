"""The Kubernetes client. Its contract (:class:`edgefleet.adapters.protocols.KubeClient`) runs against the in-memory
fake unit tests use and against a real kube-apiserver; then what only the real client does: paging, relist after
410 Gone, resume after a dropped connection, Leases, Events, the MetaServer-style plain endpoint with a misspelled
kind, clear errors for missing credentials, and loading kubeconfig and in-cluster credentials."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgefleet.adapters import kube, protocols
from edgefleet.api import common
from edgefleet.core import errors
from edgefleet.testing.apiproxy import ApiProxy
from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.fakekube import FakeKube

ED = kube.EDGEDEVICES


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.controlplane)])
async def api(request: pytest.FixtureRequest) -> AsyncIterator[tuple[protocols.KubeClient, str]]:
    """The fake, or the real client against the real API server, with a fresh namespace."""
    if request.param == "fake":
        yield FakeKube(), "plant"
        return
    control_plane: ControlPlane = request.getfixturevalue("control_plane")
    namespace: str = request.getfixturevalue("namespace")
    client = kube.connect(kube.from_kubeconfig(control_plane.kubeconfig))
    try:
        yield client, namespace
    finally:
        await client.close()


@pytest.fixture
async def client(control_plane: ControlPlane) -> AsyncIterator[kube.Client]:
    client = kube.connect(kube.from_kubeconfig(control_plane.kubeconfig))
    yield client
    await client.close()


def _device(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": common.API_VERSION,
        "kind": "EdgeDevice",
        "metadata": {"name": name, "labels": labels or {"edgefleet.io/site": "plant-a"}},
        "spec": {"models": []},
    }


# --- the contract: fake and real ---------------------------------------------------------------------------------


async def test_create_get_and_the_errors_for_existing_and_missing_objects(
    api: tuple[protocols.KubeClient, str],
) -> None:
    client, ns = api
    created = await client.create(ED, ns, _device("cam-1"))
    assert created["metadata"]["name"] == "cam-1" and created["kind"] == "EdgeDevice"
    assert (await client.get(ED, ns, "cam-1"))["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    with pytest.raises(errors.ConflictError):
        await client.create(ED, ns, _device("cam-1"))
    with pytest.raises(errors.NotFoundError):
        await client.get(ED, ns, "missing")
    with pytest.raises(errors.NotFoundError):
        await client.merge_patch(ED, ns, "missing", {"metadata": {"labels": {"a": "b"}}})


async def test_list_by_namespace_and_selectors(api: tuple[protocols.KubeClient, str]) -> None:
    client, ns = api
    await client.create(ED, ns, _device("cam-1", {"line": "l1"}))
    await client.create(ED, ns, _device("cam-2", {"line": "l2"}))
    listing = await client.list(ED, ns)
    assert [i["metadata"]["name"] for i in listing.items] == ["cam-1", "cam-2"]
    assert all(i["kind"] == "EdgeDevice" for i in listing.items) and listing.resource_version
    assert [i["metadata"]["name"] for i in (await client.list(ED, ns, label_selector="line=l2")).items] == ["cam-2"]
    by_name = await client.list(ED, ns, field_selector="metadata.name=cam-1")
    assert [i["metadata"]["name"] for i in by_name.items] == ["cam-1"]
    everywhere = await client.list(ED, None, field_selector="metadata.name=cam-1")
    assert ns in {i["metadata"]["namespace"] for i in everywhere.items}


async def test_merge_patch_is_conditional_on_a_resource_version_and_reaches_the_status(
    api: tuple[protocols.KubeClient, str],
) -> None:
    client, ns = api
    created = await client.create(ED, ns, _device("cam-1"))
    patched = await client.merge_patch(ED, ns, "cam-1", {"metadata": {"labels": {"edgefleet.io/line": "l2"}}})
    assert patched["metadata"]["labels"] == {"edgefleet.io/site": "plant-a", "edgefleet.io/line": "l2"}
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "spec": {"models": []}}
    with pytest.raises(errors.ConflictError):
        await client.merge_patch(ED, ns, "cam-1", stale)
    status = await client.merge_patch(ED, ns, "cam-1", {"status": {"agentVersion": "9.9.9", "models": []}}, "status")
    assert status["status"]["agentVersion"] == "9.9.9"
    assert (await client.get(ED, ns, "cam-1"))["status"]["agentVersion"] == "9.9.9"


async def test_server_side_apply_creates_and_updates_as_its_field_manager(
    api: tuple[protocols.KubeClient, str],
) -> None:
    client, ns = api
    labels = {"edgefleet.io/hardware-class": "x86-avx2"}
    body = {"apiVersion": common.API_VERSION, "kind": "EdgeDevice", "metadata": {"name": "cam-1", "labels": labels}}
    applied = await client.apply(ED, ns, body, field_manager="edgefleet-test", force=True)
    assert applied["metadata"]["labels"]["edgefleet.io/hardware-class"] == "x86-avx2"
    body["metadata"]["labels"]["edgefleet.io/line"] = "l3"
    again = await client.apply(ED, ns, body, field_manager="edgefleet-test", force=True)
    assert again["metadata"]["labels"]["edgefleet.io/line"] == "l3"
    assert any(m["manager"] == "edgefleet-test" for m in again["metadata"]["managedFields"])


async def test_delete_says_whether_the_object_existed(api: tuple[protocols.KubeClient, str]) -> None:
    client, ns = api
    await client.create(ED, ns, _device("cam-1"))
    assert await client.delete(ED, ns, "cam-1") is True
    assert await client.delete(ED, ns, "cam-1") is False
    with pytest.raises(errors.NotFoundError):
        await client.get(ED, ns, "cam-1")


async def test_discovery_finds_kinds_and_their_scope(api: tuple[protocols.KubeClient, str]) -> None:
    client, _ = api
    devices = await client.discover(common.API_VERSION, "EdgeDevice")
    assert (devices.plural, devices.namespaced, devices.path("x")) == ("edgedevices", True, ED.path("x"))
    assert (await client.discover("v1", "Namespace")).namespaced is False
    assert (await client.discover("v1", "ConfigMap")).path("a", "b") == "/api/v1/namespaces/a/configmaps/b"
    with pytest.raises(errors.InvalidSpecError, match="install its CRD first") as info:
        await client.discover("example.com/v1", "Widget")
    assert info.value.reason is errors.Reason.UNKNOWN_KIND


async def test_watch_lists_first_then_streams_every_change(api: tuple[protocols.KubeClient, str]) -> None:
    client, ns = api
    await client.create(ED, ns, _device("cam-1"))
    changes: list[kube.Change] = []

    async def follow() -> None:
        async for change in client.watch(ED, ns):
            changes.append(change)
            if isinstance(change, kube.WatchEvent) and change.type == "DELETED":
                return

    follower = asyncio.create_task(follow())
    await _until(lambda: bool(changes))
    await client.create(ED, ns, _device("cam-2"))
    await client.merge_patch(ED, ns, "cam-1", {"metadata": {"labels": {"a": "b"}}})
    await client.delete(ED, ns, "cam-2")
    await asyncio.wait_for(follower, 10)
    first, *events = changes
    assert isinstance(first, kube.Listing) and [i["metadata"]["name"] for i in first.items] == ["cam-1"]
    seen = [(e.type, e.object["metadata"]["name"], e.object["kind"]) for e in events if isinstance(e, kube.WatchEvent)]
    assert seen == [
        ("ADDED", "cam-2", "EdgeDevice"),
        ("MODIFIED", "cam-1", "EdgeDevice"),
        ("DELETED", "cam-2", "EdgeDevice"),
    ]


async def _until(check: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


# --- only the real client ----------------------------------------------------------------------------------------


@pytest.mark.controlplane
async def test_list_reads_every_page(
    control_plane: ControlPlane, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts: collections.Counter[str] = collections.Counter()
    session = kube.new_session()
    try:
        client = kube.Client(kube.from_kubeconfig(control_plane.kubeconfig), session, counts=counts)
        for i in range(5):
            await client.create(ED, namespace, _device(f"cam-{i}"))
        monkeypatch.setattr(kube.client, "PAGE_SIZE", 2)
        listing = await client.list(ED, namespace)
        assert [i["metadata"]["name"] for i in listing.items] == [f"cam-{i}" for i in range(5)]
        assert counts["LIST"] == 3 and counts["POST"] == 5
    finally:
        await kube.close_session(session)


@pytest.mark.controlplane
async def test_a_watch_from_an_expired_version_lists_again(client: kube.Client, namespace: str) -> None:
    await client.create(ED, namespace, _device("cam-1"))
    async for change in client.watch(ED, namespace, resource_version="1", retry_initial_seconds=0.05):
        assert isinstance(change, kube.Listing)  # 410 Gone: a fresh list, not an error
        assert [i["metadata"]["name"] for i in change.items] == ["cam-1"]
        break


@pytest.mark.controlplane
async def test_a_watch_resumes_after_the_connection_drops_without_listing_again(
    control_plane: ControlPlane, client: kube.Client, namespace: str
) -> None:
    proxy = ApiProxy(control_plane.kubeconfig)
    await proxy.up()
    behind = kube.connect(kube.plain(proxy.url, namespace), timeout_seconds=5.0)
    changes: list[kube.Change] = []

    async def follow() -> None:
        async for change in behind.watch(ED, namespace, retry_initial_seconds=0.1, retry_max_seconds=0.2):
            changes.append(change)

    follower = asyncio.create_task(follow())
    try:
        await _until(lambda: bool(changes))
        await proxy.down()
        await client.create(ED, namespace, _device("cam-while-away"))
        await asyncio.sleep(0.5)
        await proxy.up()
        await _until(lambda: len(changes) >= 2, timeout=20)
        assert isinstance(changes[0], kube.Listing) and not changes[0].items
        assert isinstance(changes[1], kube.WatchEvent)
        assert (changes[1].type, changes[1].object["metadata"]["name"]) == ("ADDED", "cam-while-away")
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await behind.close()
        await proxy.close()


@pytest.mark.controlplane
async def test_leases_are_created_then_renewed(client: kube.Client, namespace: str) -> None:
    now = dt.datetime.now(dt.UTC)
    lease = await client.renew_lease(namespace, "cam-1", "cam-1", 40, now)
    renewed = await client.renew_lease(namespace, "cam-1", "cam-1", 40, now + dt.timedelta(seconds=10))
    assert lease["spec"]["holderIdentity"] == "cam-1"
    assert renewed["spec"]["renewTime"] > lease["spec"]["renewTime"]
    assert renewed["metadata"]["uid"] == lease["metadata"]["uid"]


@pytest.mark.controlplane
async def test_events_are_posted_about_an_object(client: kube.Client, namespace: str) -> None:
    involved = {
        "apiVersion": common.API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {"name": "md", "namespace": namespace, "uid": "u-1"},
    }
    await client.record_event(involved, "Normal", "Promoted", "x" * 5000, dt.datetime.now(dt.UTC))
    (event,) = (await client.list(kube.EVENTS, namespace)).items
    assert (event["reason"], event["involvedObject"]["name"], len(event["message"])) == ("Promoted", "md", 1024)
    assert event["source"]["component"] == "edgefleet-operator"


@pytest.mark.controlplane
async def test_plain_endpoint_with_misspelled_kind(control_plane: ControlPlane, namespace: str) -> None:
    proxy = ApiProxy(control_plane.kubeconfig, misspell_kind=True)
    await proxy.up()
    session = kube.new_session()
    try:
        client = kube.Client(kube.plain(proxy.url, namespace), session)
        await client.create(ED, namespace, _device("cam-2"))
        raw = await client.request("GET", ED.path(namespace, "cam-2"))
        assert raw["kind"] == "Edgedevice"  # what MetaServer's cache sends
        assert (await client.get(ED, namespace, "cam-2"))["kind"] == "EdgeDevice"
        await proxy.down()
        with pytest.raises(errors.TransientError, match="unreachable"):
            await client.get(ED, namespace, "cam-2")
        await proxy.up()
        assert (await client.get(ED, namespace, "cam-2"))["metadata"]["name"] == "cam-2"
    finally:
        await kube.close_session(session)
        await proxy.close()


@pytest.mark.controlplane
async def test_unauthenticated_is_a_clear_error(control_plane: ControlPlane, tmp_path: Path) -> None:
    doc = yaml.safe_load(control_plane.kubeconfig.read_text())
    for user in doc["users"]:
        user["user"] = {}
    anonymous = tmp_path / "kubeconfig"
    anonymous.write_text(yaml.safe_dump(doc))
    client = kube.connect(kube.from_kubeconfig(anonymous))
    try:
        with pytest.raises(
            errors.InvalidSpecError, match=r"(401|403) .*check the credentials and the RBAC role"
        ) as info:
            await client.list(ED, "default")
        assert info.value.reason is errors.Reason.REJECTED
    finally:
        await client.close()


# --- connections ---------------------------------------------------------------------------------------------------


def test_kubeconfig_with_token_and_kind_repair(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "current-context": "edge",
                "contexts": [{"name": "edge", "context": {"cluster": "c", "user": "u", "namespace": "factory-1"}}],
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:10550/"}}],
                "users": [{"name": "u", "user": {"token": "t0ken"}}],
            }
        )
    )
    conn = kube.from_kubeconfig(path)
    assert (conn.server, conn.namespace, conn.bearer(), conn.ssl_context) == (
        "http://127.0.0.1:10550", "factory-1", "t0ken", None,
    )  # fmt: skip
    with pytest.raises(errors.InvalidSpecError, match="no entry named 'other'"):
        kube.from_kubeconfig(path, "other")
    assert kube.fix_kind({"kind": "Edgedevice"}, "EdgeDevice") == {"kind": "EdgeDevice"}
    assert kube.fix_kind({"kind": "Lease"}, "EdgeDevice") == {"kind": "Lease"}


def test_in_cluster_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "token").write_text("tok-1\n")
    (tmp_path / "namespace").write_text("factory-1")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    conn = kube.in_cluster(tmp_path)
    assert (conn.server, conn.namespace, conn.bearer()) == ("https://10.0.0.1:6443", "factory-1", "tok-1")
    (tmp_path / "token").write_text("tok-2")  # bound tokens rotate; every request reads the current one
    assert conn.bearer() == "tok-2"
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(errors.InvalidSpecError, match="not running in a pod"):
        kube.in_cluster(tmp_path)
