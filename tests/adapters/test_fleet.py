"""The fleet adapter: conditional writes that keep other deployments' entries, and revision templates."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt

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


def lease(api: FakeKube, name: str, seconds: int, renewed: dt.datetime) -> None:
    """The Lease an agent renews (``kube.Client.renew_lease`` writes the same fields)."""
    stamp = renewed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    spec = {"holderIdentity": name, "leaseDurationSeconds": seconds, "renewTime": stamp}
    api.put(kube.LEASES, "plant", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                   "metadata": {"name": name, "namespace": "plant"}, "spec": spec})  # fmt: skip


async def test_leases_are_observed_with_the_operators_clock_and_a_returning_device_triggers() -> None:
    """Reachability counts from when the operator saw a renewal, not from the device's clock; a Lease first seen
    counts from its renewTime, never from the future; a renewal that brings an expired device back wakes the
    deployments of its namespace."""
    api, _ = seeded()
    now = [dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)]
    devices = fleet.Devices(api, clock=lambda: now[0])
    t0 = now[0]

    async def renew(name: str, at: dt.datetime) -> None:
        lease(api, name, 60, at)

    await renew("dev-00", t0 - dt.timedelta(seconds=30))
    await renew("dev-01", t0 + dt.timedelta(hours=1))  # its clock runs an hour ahead
    await renew("dev-02", t0 - dt.timedelta(seconds=90))  # expired before the operator started
    changed: list[str] = []
    devices.watch(changed.append)
    try:
        await devices.devices("plant")
        contacts = await devices.contacts("plant")
        assert contacts is not None
        assert contacts["dev-00"].renewed_at == t0 - dt.timedelta(seconds=30)
        assert contacts["dev-01"].renewed_at == t0, "a renewal time in the future counts from now"
        assert contacts["dev-02"].expires_at < t0 and contacts["dev-02"].duration_seconds == 60
        changed.clear()
        now[0] = t0 + dt.timedelta(seconds=20)
        await renew("dev-00", t0 - dt.timedelta(hours=5))  # a device whose clock is five hours behind renews
        await asyncio.sleep(0.05)
        assert (await devices.contacts("plant") or {})["dev-00"].renewed_at == now[0], "watched: counts from now"
        assert changed == [], "an ordinary renewal does not wake anything"
        await renew("dev-02", now[0])  # the expired device is back
        await asyncio.sleep(0.05)
        assert changed == ["plant"]
    finally:
        await devices.close()


async def test_without_a_watch_leases_are_listed_and_unreadable_leases_mean_no_contacts() -> None:
    api, devices = seeded()
    t0 = dt.datetime.now(dt.UTC)
    lease(api, "dev-00", 300, t0)
    contacts = await devices.contacts("plant")
    assert contacts is not None and set(contacts) == {"dev-00"}

    async def forbidden(*_args: object, **_kwargs: object) -> kube.Listing:
        raise errors.EdgefleetError("leases.coordination.k8s.io is forbidden")

    api.list = forbidden  # type: ignore[method-assign]
    assert await devices.contacts("plant") is None
