"""A test's own view of one EdgeDevice on a real kube-apiserver, and the KubeControl an in-process agent uses there.

Shared by the agent's control-plane tests (``tests/edge_reconciler``): :class:`Api` polls and patches the EdgeDevice
with the admin credentials, :func:`kube_control` is the agent's side with short retries and a 5 s Lease.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from edgefleet.adapters import kube
from edgefleet.api.edgedevice import DesiredModel
from edgefleet.core import errors
from edgefleet.edge_reconciler import control
from edgefleet.testing.agent_harness import FAST
from edgefleet.testing.controlplane import ControlPlane

LABELS = {"edgefleet.io/site": "plant-a", "edgefleet.io/hardware-class": "x86-avx2"}
SETTINGS = dataclasses.replace(FAST, labels=LABELS, lease_duration_seconds=5)


class Api:
    """The test's own view of the API server (direct TLS, admin), polled from async tests."""

    def __init__(self, client: kube.Client, namespace: str, name: str) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.last: dict[str, Any] = {}

    async def refresh(self) -> dict[str, Any]:
        try:
            self.last = await self.client.get(kube.EDGEDEVICES, self.namespace, self.name)
        except errors.NotFoundError:
            self.last = {}
        return self.last

    async def want(self, *models: DesiredModel) -> None:
        patch = {"spec": {"models": [m.to_wire() for m in models]}}
        await self.client.merge_patch(kube.EDGEDEVICES, self.namespace, self.name, patch)

    def model(self, name: str = "demo") -> dict[str, Any]:
        models = (self.last.get("status") or {}).get("models") or []
        return next((m for m in models if m["name"] == name), {})

    async def until(self, check: Any, timeout: float = 20.0) -> None:
        async def poll() -> None:
            while True:
                await self.refresh()
                if check():
                    return
                await asyncio.sleep(0.05)

        await asyncio.wait_for(poll(), timeout)


@asynccontextmanager
async def api_for(control_plane: ControlPlane, namespace: str, name: str) -> AsyncIterator[Api]:
    session = kube.new_session()
    try:
        yield Api(kube.Client(kube.from_kubeconfig(control_plane.kubeconfig), session), namespace, name)
    finally:
        await kube.close_session(session)


@asynccontextmanager
async def kube_control(connection: kube.Connection, namespace: str, name: str) -> AsyncIterator[control.KubeControl]:
    session = kube.new_session()
    try:
        yield control.KubeControl(
            kube.Client(connection, session, timeout_seconds=5.0),
            namespace,
            name,
            lease_duration_seconds=5,
            retry_initial_seconds=0.1,
            retry_max_seconds=0.5,
        )
    finally:
        await kube.close_session(session)
