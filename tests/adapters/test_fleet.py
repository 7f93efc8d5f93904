"""The fleet adapter: conditional writes that keep other deployments' entries, and revision templates."""

from __future__ import annotations

import base64

import pytest

from edgefleet.adapters import bundle, fleet, kubeapi
from edgefleet.core import errors, planner
from edgefleet.testing import rollout as sim
from edgefleet.testing.fakekube import FakeKube


def seeded() -> tuple[FakeKube, fleet.Fleet]:
    kube = FakeKube()
    for device in sim.layout(3):
        kube.put(fleet.EDGEDEVICES, "plant", device.model_dump(by_alias=True, mode="json", exclude_none=True))
    return kube, fleet.Fleet(kube)


async def test_apply_retries_on_conflict_and_keeps_the_other_deployments_entry() -> None:
    kube, devices = seeded()
    listed = await devices.devices("plant")
    ours = sim.template(sim.spec()).desired_for(sim.NAME, {})
    theirs = sim.template(sim.spec(version="7.0.0")).desired_for("other", {})
    assert ours is not None and theirs is not None
    theirs = theirs.model_copy(update={"name": "vibration"})

    def concurrent_writer(
        key: tuple[kubeapi.Resource, str | None, str],
    ) -> None:  # another deployment writes the same device meanwhile
        current = kube.objects[key]
        current["spec"]["models"] = [theirs.to_wire()]
        kube.put(key[0], key[1], current)

    kube.before_patch = concurrent_writer
    written = await devices.apply("plant", sim.NAME, [planner.DeviceChange("dev-00", ours)], listed)
    assert written == 1
    models = (await kube.get(fleet.EDGEDEVICES, "plant", "dev-00"))["spec"]["models"]
    assert sorted(m["deployment"] for m in models) == ["other", sim.NAME]
    # Removing ours leaves theirs.
    await devices.apply("plant", sim.NAME, [planner.DeviceChange("dev-00", None)], await devices.devices("plant"))
    models = (await kube.get(fleet.EDGEDEVICES, "plant", "dev-00"))["spec"]["models"]
    assert [m["deployment"] for m in models] == ["other"]


async def test_a_deleted_device_is_skipped() -> None:
    kube, devices = seeded()
    listed = await devices.devices("plant")
    await kube.delete(fleet.EDGEDEVICES, "plant", "dev-01")
    ours = sim.template(sim.spec()).desired_for(sim.NAME, {})
    assert await devices.apply("plant", sim.NAME, [planner.DeviceChange("dev-01", ours)], listed) == 1
    assert kube.patches == 0


async def test_revision_templates_round_trip_through_controller_revisions() -> None:
    kube = FakeKube()
    store = fleet.Revisions(kube)
    md = sim.Fleet.new(sim.spec(), []).md
    template = sim.template(md.spec)
    assert await store.get("plant", md.metadata.name, template.revision) is None
    await store.put(md, template)
    await store.put(md, template)  # idempotent
    assert await store.get("plant", md.metadata.name, template.revision) == template
    (stored,) = await kube.list(kubeapi.CONTROLLER_REVISIONS, "plant")
    assert stored["metadata"]["labels"][fleet.LABEL_DEPLOYMENT] == md.metadata.name


async def test_signing_key_from_a_secret_and_clear_errors_when_missing() -> None:
    kube = FakeKube()
    with pytest.raises(errors.InvalidSpecError, match="create secret generic signing"):
        await fleet.signing_key(kube, "ops", "signing")
    key = bundle.generate_key()
    kube.put(
        kubeapi.SECRETS,
        "ops",
        {
            "metadata": {"name": "signing"},
            "data": {"signing-key.pem": base64.b64encode(bundle.private_key_pem(key)).decode()},
        },
    )
    loaded = await fleet.signing_key(kube, "ops", "signing")
    assert bundle.key_id(loaded.public_key()) == bundle.key_id(key.public_key())
    kube.put(kubeapi.SECRETS, "ops", {"metadata": {"name": "signing"}, "data": {"signing-key.pem": "bm90IGEga2V5"}})
    with pytest.raises(errors.InvalidSpecError, match=r"signing-key\.pem"):
        await fleet.signing_key(kube, "ops", "signing")
