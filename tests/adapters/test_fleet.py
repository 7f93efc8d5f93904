"""The fleet adapter: conditional writes that keep other deployments' entries, and revision templates."""

from __future__ import annotations

import asyncio
import base64

import pytest

from edgefleet.adapters import bundle, fleet, kube
from edgefleet.core import errors, planner
from edgefleet.testing import rollout as sim
from edgefleet.testing.fakekube import FakeKube


def seeded() -> tuple[FakeKube, fleet.Devices]:
    api = FakeKube()
    for device in sim.layout(3):
        api.put(kube.EDGEDEVICES, "plant", device.model_dump(by_alias=True, mode="json", exclude_none=True))
    return api, fleet.Devices(api)


async def test_apply_retries_on_conflict_and_keeps_the_other_deployments_entry() -> None:
    api, devices = seeded()
    listed = await devices.devices("plant")
    ours = sim.template(sim.spec()).desired_for(sim.NAME, {})
    theirs = sim.template(sim.spec(version="7.0.0")).desired_for("other", {})
    assert ours is not None and theirs is not None
    theirs = theirs.model_copy(update={"name": "vibration"})

    def concurrent_writer(
        key: tuple[kube.Resource, str | None, str],
    ) -> None:  # another deployment writes the same device meanwhile
        current = api.objects[key]
        current["spec"]["models"] = [theirs.to_wire()]
        api.put(key[0], key[1], current)

    api.before_patch = concurrent_writer
    written = await devices.apply("plant", sim.NAME, [planner.DeviceChange("dev-00", ours)], listed)
    assert written == 1
    models = (await api.get(kube.EDGEDEVICES, "plant", "dev-00"))["spec"]["models"]
    assert sorted(m["deployment"] for m in models) == ["other", sim.NAME]
    # Removing ours leaves theirs.
    await devices.apply("plant", sim.NAME, [planner.DeviceChange("dev-00", None)], await devices.devices("plant"))
    models = (await api.get(kube.EDGEDEVICES, "plant", "dev-00"))["spec"]["models"]
    assert [m["deployment"] for m in models] == ["other"]


async def test_a_deleted_device_is_skipped() -> None:
    api, devices = seeded()
    listed = await devices.devices("plant")
    await api.delete(kube.EDGEDEVICES, "plant", "dev-01")
    ours = sim.template(sim.spec()).desired_for(sim.NAME, {})
    assert await devices.apply("plant", sim.NAME, [planner.DeviceChange("dev-01", ours)], listed) == 1
    assert api.patches == 0


async def test_revision_templates_round_trip_through_controller_revisions() -> None:
    api = FakeKube()
    store = fleet.Revisions(api)
    md = sim.Fleet.new(sim.spec(), []).md
    template = sim.template(md.spec)
    assert await store.get("plant", md.metadata.name, template.revision) is None
    await store.put(md, template)
    await store.put(md, template)  # idempotent
    assert await store.get("plant", md.metadata.name, template.revision) == template
    (stored,) = (await api.list(kube.CONTROLLER_REVISIONS, "plant")).items
    assert stored["metadata"]["labels"][fleet.LABEL_DEPLOYMENT] == md.metadata.name


async def test_signing_key_from_a_secret_and_clear_errors_when_missing() -> None:
    api = FakeKube()
    with pytest.raises(errors.InvalidSpecError, match="create secret generic signing"):
        await fleet.signing_key(api, "ops", "signing")
    key = bundle.generate_key()
    api.put(
        kube.SECRETS,
        "ops",
        {
            "metadata": {"name": "signing"},
            "data": {"signing-key.pem": base64.b64encode(bundle.private_key_pem(key)).decode()},
        },
    )
    loaded = await fleet.signing_key(api, "ops", "signing")
    assert bundle.key_id(loaded.public_key()) == bundle.key_id(key.public_key())
    api.put(kube.SECRETS, "ops", {"metadata": {"name": "signing"}, "data": {"signing-key.pem": "bm90IGEga2V5"}})
    with pytest.raises(errors.InvalidSpecError, match=r"signing-key\.pem"):
        await fleet.signing_key(api, "ops", "signing")


async def test_watched_devices_come_from_the_cache_and_report_decision_relevant_changes() -> None:
    api, devices = seeded()
    changed: list[str] = []
    devices.watch(changed.append)
    try:
        assert [d.metadata.name for d in await devices.devices("plant")] == ["dev-00", "dev-01", "dev-02"]
        assert changed == ["plant"]  # the first list
        raw = await api.get(kube.EDGEDEVICES, "plant", "dev-00")
        await api.merge_patch(kube.EDGEDEVICES, "plant", "dev-00", {"metadata": {"labels": {"extra": "x"}}})
        await asyncio.sleep(0.05)
        assert changed == ["plant", "plant"]
        await api.merge_patch(kube.EDGEDEVICES, "plant", "dev-00", {"metadata": {"annotations": {"a": "b"}}})
        await asyncio.sleep(0.05)
        assert changed == ["plant", "plant"]  # nothing a rollout decision depends on
        ours = sim.template(sim.spec()).desired_for(sim.NAME, {})
        listed = await devices.devices("plant")
        await devices.apply("plant", sim.NAME, [planner.DeviceChange("dev-00", ours)], listed)
        cached = {d.metadata.name: d for d in await devices.devices("plant")}["dev-00"]
        assert [m.deployment for m in cached.spec.models] == [sim.NAME]  # the own write, at once
        assert raw["metadata"]["resourceVersion"] != cached.metadata.resource_version
    finally:
        await devices.close()
