"""The shipped per-device Role is enough for the agent and no more: a device converges and reports under
``edge_reconciler/rbac-device.yaml`` on a real API server (RBAC authorizer), and is refused everything else."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgefleet.adapters import kube
from edgefleet.api import common
from edgefleet.core import errors
from edgefleet.testing.agent_harness import Harness, desired
from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.device_api import SETTINGS, api_for, kube_control

pytestmark = pytest.mark.controlplane
ROLE = Path(__file__).resolve().parents[2] / "edge_reconciler" / "rbac-device.yaml"


async def test_agent_runs_with_the_per_device_role_only(
    control_plane: ControlPlane, namespace: str, harness: Harness
) -> None:
    control_plane.kubectl(
        "apply", "-f", "-", input=ROLE.read_text().replace("NAMESPACE", namespace).replace("DEVICE", "dev-r")
    )
    admin = kube.from_kubeconfig(control_plane.kubeconfig)
    device = dataclasses.replace(admin, impersonate_user="edgefleet:device:dev-r")
    v1, url1 = harness.publish("demo", "1.0.0")
    async with (
        api_for(control_plane, namespace, "dev-r") as api,
        kube_control(device, namespace, "dev-r") as ctl,
        harness.running(SETTINGS, ctl),
    ):
        await api.client.create(
            kube.EDGEDEVICES,
            namespace,
            {"apiVersion": common.API_VERSION, "kind": "EdgeDevice", "metadata": {"name": "dev-other"}, "spec": {}},
        )
        await api.until(lambda: bool(api.last.get("status")))
        await api.want(desired(v1, url1))
        await api.until(lambda: api.model().get("activeDigest") == v1.digest and api.model()["state"] == "Active")
        assert api.last["metadata"]["labels"] == SETTINGS.labels
        lease = await api.client.get(kube.LEASES, namespace, "dev-r")
        assert lease["spec"]["holderIdentity"] == "dev-r"

        client = ctl.client
        for forbidden in (
            client.get(kube.EDGEDEVICES, namespace, "dev-other"),
            client.list(kube.EDGEDEVICES, namespace),
            client.merge_patch(kube.EDGEDEVICES, namespace, "dev-other", {"metadata": {"labels": {"x": "y"}}}),
            client.list(kube.SECRETS, namespace),
            client.delete(kube.EDGEDEVICES, namespace, "dev-r"),
        ):
            with pytest.raises(errors.InvalidSpecError, match=r": 403 ") as info:
                await forbidden
            assert info.value.reason is errors.Reason.REJECTED
