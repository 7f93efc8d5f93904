"""The dashboard's server on a real API server and a real HTTP socket: what a page gets (snapshot, then pushed
updates), that it is read-only and hardened, and that it notices devices change, appear, go offline and disappear.

The fleet is :mod:`edgefleet.testing.fleetscene` (the operator's and the agents' writes, made by the test); the browser
tests in ``test_browser.py`` run the real operator and real agents.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from edgefleet.adapters import dashboard, kube
from edgefleet.cli import dashboard as cli_dashboard
from edgefleet.core import fleetmap
from edgefleet.testing import controlplane, fleetscene

pytestmark = pytest.mark.controlplane
DEVICES = 40


class Page:
    """One browser's view of the server, without a browser: the SSE stream read event by event."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url
        self.response: aiohttp.ClientResponse | None = None

    async def open(self, query: str = "lines=*") -> dict[str, Any]:
        self.response = await self.http.get(f"{self.url}api/stream?{query}")
        assert self.response.status == 200
        assert self.response.headers["Content-Type"] == "text/event-stream"
        name, data = await self.next()
        assert name == "snapshot"
        return data

    async def next(self, timeout: float = 10.0) -> tuple[str, dict[str, Any]]:
        assert self.response is not None
        name = None
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.response.content.readline()).decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: ") and name is not None:
                    return name, json.loads(line[len("data: ") :])

    async def until(self, check: Any, timeout: float = 15.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                _, data = await self.next(timeout)
                if check(data):
                    return data

    def close(self) -> None:
        if self.response is not None:
            self.response.close()


@pytest.fixture
async def served(
    control_plane: controlplane.ControlPlane, namespace: str
) -> AsyncIterator[tuple[kube.Client, fleetscene.Scene, dashboard.FleetCache, dashboard.Server]]:
    client = kube.connect(kube.from_kubeconfig(control_plane.kubeconfig))
    scene = fleetscene.Scene(namespace, DEVICES)
    await fleetscene.populate(client, scene)
    fleet = dashboard.FleetCache(client, [namespace], tick_seconds=0.5, coalesce_seconds=0.05)
    server = dashboard.Server(fleet, "127.0.0.1", 0, check_host=True)
    await fleet.start()
    try:
        await fleet.wait_synced(30)
        await server.start()
        yield client, scene, fleet, server
    finally:
        await server.stop()
        await fleet.stop()
        await client.close()


def expected_counts(n: int) -> dict[str, int]:
    return fleetmap.counts(fleetscene.state_of(i) for i in range(n))


async def test_snapshot_shows_the_scene_and_pushes_a_device_change(
    served: tuple[kube.Client, fleetscene.Scene, dashboard.FleetCache, dashboard.Server],
) -> None:
    client, scene, _, server = served
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}api/snapshot?lines=auto") as response:
            assert response.status == 200
            snap = await response.json()
        assert snap["fleet"]["total"] == DEVICES and snap["fleet"]["counts"] == expected_counts(DEVICES)
        assert snap["expandedAll"] is True and len(snap["tiles"]) == DEVICES
        by_id = {t["id"]: t for t in snap["tiles"]}
        for i in range(DEVICES):
            assert by_id[f"{scene.namespace}/{scene.name(i)}"]["st"] == fleetscene.state_of(i), i
        assert {s["site"] for s in snap["fleet"]["sites"]} == {"plant-1", "plant-2"}
        [panel] = snap["deployments"]
        assert panel["phase"] == "Progressing" and [s["state"] for s in panel["steps"]][2] == "current"
        assert snap["chart"]["deployment"] == f"{scene.namespace}/{fleetscene.NAME}"
        assert snap["chart"]["points"][-1]["counts"]["canary"] == expected_counts(DEVICES)["canary"]

        canary = next(i for i in range(DEVICES) if fleetscene.state_of(i) == "canary")
        device_id = f"{scene.namespace}/{scene.name(canary)}"
        page = Page(http, server.url)
        first = await page.open(f"lines=*&device={device_id}")
        assert first["device"]["state"] == "canary" and first["device"]["reachability"]["online"] is True
        try:
            await fleetscene.set_state(client, scene, canary, "rolledBack", "rolled back: <b>p95</b> too high")
            update = await page.until(lambda d: any(t["id"] == device_id for t in d.get("tiles", [])))
            [t] = [t for t in update["tiles"] if t["id"] == device_id]
            assert (t["st"], t["r"]) == ("rolledBack", "rolled back: <b>p95</b> too high")
            assert update["fleet"]["counts"]["rolledBack"] == expected_counts(DEVICES)["rolledBack"] + 1
            assert update["device"]["state"] == "rolledBack"
            assert [x["state"] for x in update["device"]["transitions"]][:2] == ["rolledBack", "canary"]
        finally:
            page.close()


async def test_a_device_that_rolled_back_keeps_a_note_after_the_abort(
    served: tuple[kube.Client, fleetscene.Scene, dashboard.FleetCache, dashboard.Server],
) -> None:
    client, scene, _, server = served
    i = next(i for i in range(DEVICES) if fleetscene.state_of(i) == "canary")
    device_id = f"{scene.namespace}/{scene.name(i)}"
    async with aiohttp.ClientSession() as http:
        page = Page(http, server.url)
        await page.open(f"lines=*&device={device_id}")
        try:
            await fleetscene.set_state(client, scene, i, "rolledBack", "rolled back version 1.1.0 to 1.0.0: slow")
            await page.until(
                lambda d: any(t["id"] == device_id and t["st"] == "rolledBack" for t in d.get("tiles", []))
            )
            # the operator aborts: the canary is recorded as aborted and the device asked for stable again
            status = fleetscene.deployment_status(scene)
            status.update({"canaryRevision": None, "abortedRevision": scene.canary.revision, "phase": "RolledBack"})
            await client.merge_patch(
                kube.MODELDEPLOYMENTS, scene.namespace, fleetscene.NAME, {"status": status}, "status"
            )
            await fleetscene.write_device(client, scene, i, "stable")
            update = await page.until(
                lambda d: any(t["id"] == device_id and t["st"] == "stable" for t in d.get("tiles", []))
            )
            [t] = [t for t in update["tiles"] if t["id"] == device_id]
            assert t["rb"].startswith("rolled back 1.1.0 on its own at ") and t["rb"].endswith("to 1.0.0: slow")
            assert update["device"]["note"] == t["rb"]
        finally:
            page.close()


async def test_a_page_opened_before_any_deployment_gets_the_chart_when_one_appears(
    control_plane: controlplane.ControlPlane, namespace: str
) -> None:
    client = kube.connect(kube.from_kubeconfig(control_plane.kubeconfig))
    fleet = dashboard.FleetCache(client, [namespace], tick_seconds=0.5, coalesce_seconds=0.05)
    server = dashboard.Server(fleet, "127.0.0.1", 0, check_host=True)
    await fleet.start()
    try:
        await fleet.wait_synced(30)
        await server.start()
        async with aiohttp.ClientSession() as http:
            page = Page(http, server.url)
            first = await page.open()
            assert first["chart"] == {"deployment": None, "points": []} and first["fleet"]["total"] == 0
            try:
                await fleetscene.populate(client, fleetscene.Scene(namespace, 4))
                update = await page.until(lambda d: "chart" in d)
                assert update["chart"]["deployment"] == f"{namespace}/{fleetscene.NAME}"
                assert update["chart"]["points"], update["chart"]
            finally:
                page.close()
    finally:
        await server.stop()
        await fleet.stop()
        await client.close()


async def test_only_expanded_lines_get_tiles_and_lines_follow_label_changes(
    served: tuple[kube.Client, fleetscene.Scene, dashboard.FleetCache, dashboard.Server],
) -> None:
    client, scene, _, server = served
    async with aiohttp.ClientSession() as http:
        page = Page(http, server.url)
        snap = await page.open("lines=plant-1/line-1")
        try:
            assert snap["expandedAll"] is False
            assert {(t["s"], t["l"]) for t in snap["tiles"]} == {("plant-1", "line-1")}
            assert len(snap["tiles"]) == DEVICES // 10
            # a device of another line changes: the counts travel, its tile does not
            other = next(
                i
                for i in range(DEVICES)
                if scene.labels(i)["edgefleet.io/line"] == "line-2" and fleetscene.state_of(i) == "canary"
            )
            await fleetscene.set_state(client, scene, other, "failed")
            update = await page.until(lambda d: "fleet" in d)
            assert "tiles" not in update
            # a device moves into the expanded line: its tile arrives; moved out again: removed
            name = scene.name(other)
            patch = {"metadata": {"labels": {"edgefleet.io/site": "plant-1", "edgefleet.io/line": "line-1"}}}
            await client.merge_patch(kube.EDGEDEVICES, scene.namespace, name, patch)
            moved = await page.until(lambda d: any(t["n"] == name for t in d.get("tiles", [])))
            assert [t["l"] for t in moved["tiles"] if t["n"] == name] == ["line-1"]
            await client.delete(kube.EDGEDEVICES, scene.namespace, name)
            gone = await page.until(lambda d: f"{scene.namespace}/{name}" in d.get("removed", []))
            assert gone["fleet"]["total"] == DEVICES - 1
        finally:
            page.close()


async def test_a_device_whose_lease_runs_out_turns_offline_without_any_write(
    served: tuple[kube.Client, fleetscene.Scene, dashboard.FleetCache, dashboard.Server],
) -> None:
    client, scene, fleet, server = served
    i = next(i for i in range(DEVICES) if fleetscene.state_of(i) == "stable")
    name = scene.name(i)
    # a short Lease renewed now: nothing is written after this, time alone makes the device offline
    await client.renew_lease(scene.namespace, name, name, 2, dt.datetime.now(dt.UTC))
    async with aiohttp.ClientSession() as http:
        page = Page(http, server.url)
        await page.open(f"lines=*&device={scene.namespace}/{name}")
        try:
            update = await page.until(
                lambda d: any(t["n"] == name and t["st"] == "offline" for t in d.get("tiles", [])), timeout=20
            )
            assert update["device"]["reachability"]["online"] is False
            assert "Lease duration 2 s" in update["device"]["reason"]
            await client.renew_lease(scene.namespace, name, name, 600, dt.datetime.now(dt.UTC))
            back = await page.until(lambda d: any(t["n"] == name for t in d.get("tiles", [])))
            assert [t["st"] for t in back["tiles"] if t["n"] == name] == ["stable"]
        finally:
            page.close()
    assert fleet.refreshes > 2


async def test_read_only_hardened_and_loopback_only(
    served: tuple[kube.Client, fleetscene.Scene, dashboard.FleetCache, dashboard.Server],
) -> None:
    _, _, _, server = served
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url) as response:
            assert response.status == 200 and response.content_type == "text/html"
            assert response.headers["Content-Security-Policy"] == dashboard.CSP
            assert "'unsafe-inline'" not in dashboard.CSP and "script-src 'self'" in dashboard.CSP
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["X-Frame-Options"] == "DENY"
            page = await response.text()
            assert '<script src="/static/app.js" defer></script>' in page
        for asset, kind in (("app.js", "text/javascript"), ("app.css", "text/css"), ("favicon.svg", "image/svg+xml")):
            async with http.get(f"{server.url}static/{asset}") as response:
                assert response.status == 200 and response.content_type == kind
                assert "Content-Security-Policy" in response.headers
        for path in ("static/cache.py", "static/..%2Fcache.py", "static/%2e%2e/server.py", "api/nothing"):
            async with http.get(server.url + path) as response:
                assert response.status == 404, path
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            async with http.request(method, f"{server.url}api/snapshot", data=b"{}") as response:
                assert response.status == 405, method
                assert "Content-Security-Policy" in response.headers
        # a page whose DNS name was rebound to 127.0.0.1 sends its own Host header
        async with http.get(f"{server.url}api/snapshot", headers={"Host": "evil.example:80"}) as response:
            assert response.status == 421
        async with http.get(f"{server.url}api/snapshot", headers={"Host": f"localhost:{server.port}"}) as response:
            assert response.status == 200
        async with http.get(f"{server.url}api/stream?device=no-slash") as response:
            assert response.status == 400 and "namespace/name" in await response.text()
        async with http.get(f"{server.url}api/snapshot?lines=" + ",".join(["a/b"] * 600)) as response:
            assert response.status == 400
        async with http.get(f"{server.url}healthz") as response:
            assert response.status == 200 and (await response.json())["devices"] is True


VIEWER_ROLE = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: fleet-viewer, namespace: {ns}}}
rules:
  - apiGroups: [edgefleet.io]
    resources: [edgedevices, modeldeployments]
    verbs: [get, list, watch]
  - apiGroups: [""]
    resources: [events]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: fleet-viewer, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: fleet-viewer}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: fleet-viewer}}]
"""


async def test_a_user_who_cannot_read_leases_sees_reachability_unknown_not_offline(
    control_plane: controlplane.ControlPlane, namespace: str
) -> None:
    admin = kube.connect(kube.from_kubeconfig(control_plane.kubeconfig))
    scene = fleetscene.Scene(namespace, 20)
    await fleetscene.populate(admin, scene)
    await admin.close()
    control_plane.kubectl("apply", "-f", "-", input=VIEWER_ROLE.format(ns=namespace))
    viewer = dataclasses.replace(kube.from_kubeconfig(control_plane.kubeconfig), impersonate_user="fleet-viewer")
    client = kube.connect(viewer)
    fleet = dashboard.FleetCache(client, [namespace], tick_seconds=0.5, coalesce_seconds=0.05, leases=False)
    try:
        unreadable = await cli_dashboard._preflight(client, [namespace])
        assert list(unreadable) == ["Lease"] and unreadable["Lease"].startswith("cannot list Leases (GET")
        assert "403" in unreadable["Lease"] and "offline devices cannot be told apart" in unreadable["Lease"]
        await fleet.start()
        await fleet.wait_synced(30, lease_timeout=2)
        sub = dashboard.Subscription(all_lines=True)
        snap = dashboard.pages.snapshot(fleet, sub)
        assert snap["meta"]["synced"] == {"devices": True, "deployments": True, "leases": False}
        assert snap["fleet"]["total"] == 20 and snap["fleet"]["counts"]["offline"] == 0
        assert {t.online for t in fleet.tiles.values()} == {None}
    finally:
        await fleet.stop()
        await client.close()


async def test_every_namespace_at_once_keeps_same_named_devices_apart(
    control_plane: controlplane.ControlPlane, namespace: str
) -> None:
    other = f"{namespace}-b"[:63]
    control_plane.kubectl("create", "namespace", other)
    client = kube.connect(kube.from_kubeconfig(control_plane.kubeconfig))
    for ns in (namespace, other):
        await fleetscene.populate(client, fleetscene.Scene(ns, 3))
    fleet = dashboard.FleetCache(client, None, tick_seconds=0.5, coalesce_seconds=0.05)
    await fleet.start()
    try:
        await fleet.wait_synced(30)
        ids = set(fleet.tiles)
        assert {f"{ns}/cam-0000{i}" for ns in (namespace, other) for i in range(3)} <= ids
        snap = dashboard.pages.snapshot(fleet, dashboard.Subscription(all_lines=True))
        assert {f"{namespace}/weld", f"{other}/weld"} <= {d["id"] for d in snap["deployments"]}
        assert snap["meta"]["namespaces"] is None
    finally:
        await fleet.stop()
        await client.close()
