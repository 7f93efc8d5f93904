"""The edge agent against a real kube-apiserver: registration, Lease heartbeats, convergence driven by the
EdgeDevice spec, status reports, offline operation while the API is unreachable, and data residency of
everything the agent sends out."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import struct
from typing import Any

import numpy as np
import pytest

from edgefleet.adapters import bundle, kube
from edgefleet.core import errors
from edgefleet.testing.agent_harness import Harness, Traffic, desired, eventually
from edgefleet.testing.apiproxy import ApiProxy
from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.device_api import LABELS, SETTINGS, Api, api_for, kube_control
from edgefleet.testing.tcpproxy import TcpProxy

pytestmark = pytest.mark.controlplane


async def _lease(api: Api, timeout: float = 20.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await api.client.get(kube.LEASES, api.namespace, api.name)
        except errors.NotFoundError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_device_registers_converges_and_reports(
    control_plane: ControlPlane, namespace: str, harness: Harness
) -> None:
    v1, url1 = harness.publish("demo", "1.0.0")
    v2, url2 = harness.publish("demo", "1.1.0")
    connection = kube.from_kubeconfig(control_plane.kubeconfig)
    async with (
        api_for(control_plane, namespace, "dev-1") as api,
        kube_control(connection, namespace, "dev-1") as ctl,
        harness.running(SETTINGS, ctl) as agent,
    ):
        await api.until(lambda: api.last.get("metadata", {}).get("labels") == LABELS)
        lease = await _lease(api)
        assert lease["spec"]["holderIdentity"] == "dev-1" and lease["spec"]["leaseDurationSeconds"] == 5

        await api.want(desired(v1, url1))
        await api.until(lambda: api.model().get("activeDigest") == v1.digest and api.model()["state"] == "Active")
        status = api.last["status"]
        assert status["observedGeneration"] == api.last["metadata"]["generation"]
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True" and ready["observedGeneration"] == api.last["metadata"]["generation"]
        assert status["capabilities"]["executionProviders"]

        await api.want(desired(v2, url2))
        await api.until(lambda: api.model().get("activeDigest") == v2.digest and api.model()["state"] == "Active")
        assert api.model()["previousDigest"] == v1.digest
        assert harness.served_version() == "1.1.0"

        # Heartbeats renew the Lease; an idle device does not rewrite its EdgeDevice.
        await asyncio.sleep(1.5)  # let probation end and its report land
        before = (await api.refresh())["metadata"]["resourceVersion"]
        renew_before = (await api.client.get(kube.LEASES, namespace, "dev-1"))["spec"]["renewTime"]
        await asyncio.sleep(2.6)
        assert (await api.refresh())["metadata"]["resourceVersion"] == before
        assert (await api.client.get(kube.LEASES, namespace, "dev-1"))["spec"]["renewTime"] != renew_before

        await api.want()
        await api.until(lambda: api.last.get("status", {}).get("models") == [])
        assert agent.registry.all() == []


async def test_rollback_is_reported_with_its_reason(
    control_plane: ControlPlane, namespace: str, harness: Harness
) -> None:
    good, url_good = harness.publish("demo", "1.0.0")
    bad, url_bad = harness.publish("demo", "2.0.0", "nan")
    connection = kube.from_kubeconfig(control_plane.kubeconfig)
    async with (
        api_for(control_plane, namespace, "dev-4") as api,
        kube_control(connection, namespace, "dev-4") as ctl,
        harness.running(SETTINGS, ctl),
    ):
        await api.until(lambda: bool(api.last))
        await api.want(desired(good, url_good))
        await api.until(lambda: api.model().get("activeDigest") == good.digest)
        await api.want(desired(bad, url_bad))
        await eventually(lambda: harness.served_version() == "2.0.0")
        traffic = Traffic(harness).start()  # normal-distributed inputs: the bad version emits NaN for negatives
        await api.until(lambda: api.model().get("state") == "RolledBack")
        await traffic.stop()
    model = api.model()
    assert model["activeDigest"] == good.digest and model["desiredDigest"] == bad.digest
    assert model["message"].startswith("rolled back version 2.0.0 to 1.0.0: NonFiniteOutput: ")
    assert model["health"]["verdict"] != "Unhealthy"  # health is about the active (previous, good) version
    conditions = {c["type"]: c for c in api.last["status"]["conditions"]}
    assert conditions["Stalled"]["status"] == "True" and conditions["Ready"]["status"] == "False"
    assert traffic.failed == []


@pytest.mark.parametrize("path", ["tls-through-tcp-proxy", "metaserver-plain-http"])
async def test_keeps_serving_while_api_unreachable_and_reports_after_reconnect(
    control_plane: ControlPlane, namespace: str, harness: Harness, path: str
) -> None:
    v1, url1 = harness.publish("demo", "1.0.0")
    v2 = harness.publish("demo", "2.0.0")[0]
    url2 = harness.artifacts.publish("slow-" + v2.filename, v2.data, chunk_delay=0.3)  # a 1 s download
    proxy: ApiProxy | TcpProxy
    if path == "metaserver-plain-http":
        proxy = ApiProxy(control_plane.kubeconfig, misspell_kind=True)  # MetaServer stand-in
        connection = kube.plain(proxy.url, namespace)
    else:
        # The device's own TLS client-certificate connection, through a TCP proxy that can cut the network.
        admin = kube.from_kubeconfig(control_plane.kubeconfig)
        host, port = admin.server.removeprefix("https://").rsplit(":", 1)
        proxy = TcpProxy(host, int(port))
        connection = dataclasses.replace(admin, server=f"https://{host}:{proxy.port}")
    await proxy.up()
    try:
        async with (
            api_for(control_plane, namespace, "dev-2") as api,
            kube_control(connection, namespace, "dev-2") as ctl,
            harness.running(SETTINGS, ctl) as agent,
        ):
            await api.until(lambda: bool(api.last))
            await api.want(desired(v1, url1))
            await api.until(lambda: api.model().get("activeDigest") == v1.digest)
            traffic = Traffic(harness, positive=True).start()

            await api.want(desired(v2, url2))
            await eventually(lambda: any(m.artifact.digest == v2.digest for m in agent.store.journal.spec.models))
            await proxy.down()
            await eventually(lambda: harness.served_version() == "2.0.0")
            await asyncio.sleep(1.0)  # offline: reports fail and are buffered
            await api.refresh()
            assert api.model().get("activeDigest") == v1.digest  # the API has not heard of the switch

            await proxy.up()
            await api.until(lambda: api.model().get("activeDigest") == v2.digest and api.model()["state"] == "Active")
            await traffic.stop()
    finally:
        await (proxy.close() if isinstance(proxy, ApiProxy) else proxy.down())
    assert traffic.failed == []
    assert traffic.versions.get("1.0.0", 0) > 0 and traffic.versions.get("2.0.0", 0) > 0
    if isinstance(proxy, TcpProxy):
        assert proxy.connections >= 2  # the agent's connections really went through the proxy, and came back


def _forms(values: np.ndarray[Any, Any]) -> set[bytes]:
    """Every serialisation of the tensor values we look for: float reprs, base64 and raw bytes."""
    forms: set[bytes] = set()
    flat = values.astype(np.float32).ravel()
    for v in flat:
        f = float(v)
        for text in (repr(f), str(v), f"{f:.6g}", f"{f:.7g}", f"{f:.9g}", repr(float(np.float64(v)))):
            if len(text.lstrip("-")) >= 6:  # short strings ("0.5") are not evidence of anything
                forms.add(text.encode())
        raw = struct.pack("<f", f)
        forms.add(raw)
        forms.add(base64.b64encode(raw).rstrip(b"="))
    whole = np.ascontiguousarray(values.astype("<f4")).tobytes()
    forms.add(whole)
    forms.add(base64.b64encode(whole))
    forms.add(bundle.canonical_json(bundle.encode_array(values.astype(np.float32)))[:60])
    return forms


async def test_data_residency_no_input_or_output_leaves_the_device(
    control_plane: ControlPlane, namespace: str, harness: Harness
) -> None:
    v1, url1 = harness.publish("demo", "1.0.0")
    proxy = ApiProxy(control_plane.kubeconfig)
    await proxy.up()
    rng = np.random.default_rng(20261127)
    seen: list[np.ndarray[Any, Any]] = []
    try:
        async with (
            api_for(control_plane, namespace, "dev-3") as api,
            kube_control(kube.plain(proxy.url, namespace), namespace, "dev-3") as ctl,
            harness.running(dataclasses.replace(SETTINGS, status_interval_seconds=0.3), ctl),
        ):
            await api.until(lambda: bool(api.last))
            await api.want(desired(v1, url1))
            await api.until(lambda: api.model().get("activeDigest") == v1.digest)
            assert harness.http is not None
            url = f"http://127.0.0.1:{harness.port}/v1/models/demo:predict"
            for i in range(150):
                x = rng.normal(size=(2, 4)).astype(np.float32)
                if i % 2:
                    status, body = await harness.predict(x)
                    y = np.asarray(body["outputs"]["y"], dtype=np.float32)
                else:
                    headers = {"Content-Type": "application/octet-stream", "X-Edgefleet-Shape": "2,4"}
                    async with harness.http.post(url, data=x.tobytes(), headers=headers) as r:
                        status = r.status
                        y = np.frombuffer(await r.read(), dtype="<f4").reshape(2, 3)
                assert status == 200
                seen += [x, y]
            # Health summaries of this traffic reach the API server.
            await api.until(lambda: (api.model().get("health") or {}).get("samples", 0) >= 150)
            await asyncio.sleep(0.5)
    finally:
        await proxy.close()

    outbound = b"\n".join(proxy.captured) + b"\n".join(
        f"{r.method} {r.path}\n{r.headers}".encode() for r in harness.artifacts.requests
    )
    assert any(b"PATCH" in c and b"/status" in c for c in proxy.captured)  # status really went out this way
    assert any(b"leases" in c for c in proxy.captured)
    assert b'"samples":' in outbound
    # The detector finds values where they are (the client's own request body), so an empty result means something.
    probe = json.dumps({"inputs": {"x": seen[0].tolist()}}).encode() + seen[1].astype("<f4").tobytes()
    assert len([f for f in _forms(seen[0]) | _forms(seen[1]) if f in probe]) >= seen[0].size
    leaks = sorted({form for values in seen for form in _forms(values) if form in outbound})
    assert leaks == [], f"{len(leaks)} tensor serialisations found in outbound traffic: {leaks[:5]}"
    print(f"data residency: {len(proxy.captured)} API requests, {len(outbound)} bytes checked, 0 leaks")


async def test_live_traffic_does_not_make_the_agent_answer_its_own_status_echoes(
    control_plane: ControlPlane, namespace: str, harness: Harness
) -> None:
    """The device's watch delivers the echo of each of its own status writes; with health numbers moving under live
    traffic, answering every echo with another write would keep the device writing all the time. Only a changed
    spec, a changed verdict or state, or the status interval may cause a write."""
    v1, url1 = harness.publish("demo", "1.0.0")
    settings = dataclasses.replace(SETTINGS, status_interval_seconds=60.0, report_coalesce_seconds=0.05)
    async with (
        api_for(control_plane, namespace, "dev-echo") as api,
        kube_control(kube.from_kubeconfig(control_plane.kubeconfig), namespace, "dev-echo") as ctl,
        harness.running(settings, ctl) as agent,
    ):
        await api.until(lambda: bool(api.last))
        await api.want(desired(v1, url1))
        await api.until(lambda: api.model().get("activeDigest") == v1.digest)
        x = np.zeros((2, 4), dtype=np.float32)
        served = 0

        async def traffic(seconds: float) -> None:
            nonlocal served
            end = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < end:
                status, _ = await harness.predict(x)
                assert status == 200
                served += 1
                await asyncio.sleep(0.01)

        while (api.model().get("health") or {}).get("verdict") != "Healthy":
            await traffic(0.2)
            await api.refresh()
        await traffic(1.0)  # the verdict's own write settles
        before, served = agent.reports, 0
        await traffic(8.0)
        writes = agent.reports - before
        assert served > 100
        assert writes <= 1, f"{writes} status writes in 8 s of traffic with nothing to report"
