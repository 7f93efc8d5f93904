"""The simulated fleet's layout: shards cover every device once, labels spread evenly, statistics add up."""

from __future__ import annotations

import collections

import pytest

from edgefleet.testing.fleetsim import layout

SPEC = layout.FleetSpec("kubeconfig", "ns", 1000, 3, "/tmp/x", ("trust.pem",))


@pytest.mark.parametrize(("devices", "processes"), [(1, 1), (5, 2), (100, 3), (1000, 4), (3, 8), (0, 2)])
def test_shards_cover_every_device_once(devices: int, processes: int) -> None:
    shards = layout.shards(devices, processes)
    indexes = [i for shard in shards for i in shard]
    assert indexes == list(range(devices))
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_labels_spread_over_sites_lines_and_hardware() -> None:
    labels = [layout.labels(SPEC, i) for i in range(SPEC.devices)]
    lines = collections.Counter(label["edgefleet.io/line"] for label in labels)
    assert len(lines) == layout.SITES * layout.LINES_PER_SITE
    assert max(lines.values()) - min(lines.values()) <= 1
    hardware = collections.Counter(label["edgefleet.io/hardware-class"] for label in labels)
    assert set(hardware) == {"x86", "arm64"} and abs(hardware["x86"] - 2 * hardware["arm64"]) <= 2
    assert len({layout.device_name(SPEC, i) for i in range(SPEC.devices)}) == SPEC.devices


def test_spec_round_trips_through_json() -> None:
    assert layout.FleetSpec.from_json(SPEC.to_json()) == SPEC


def test_statistics_add_up_over_workers() -> None:
    parts = [
        {"devices": 2, "started": 2, "registered": 2, "rssBytes": 10,
         "requests": {"GET": 3, "PATCH": 4, "WATCH": 2}, "reported": {"adder|2.0.0|Healthy|Active": 2}},
        {"devices": 3, "started": 3, "registered": 1, "rssBytes": 5,
         "requests": {"PATCH": 1, "POST": 2, "LIST": 3}, "reported": {"adder|2.0.0|Pending|Active": 1,
                                                                       "adder|1.0.0|Healthy|Active": 2}},
    ]  # fmt: skip
    snap = layout.combine(parts, at=1.0)
    assert (snap.devices, snap.registered, snap.rss_bytes, snap.workers) == (5, 3, 15, 2)
    assert snap.writes == 7 and snap.total_requests == 15
    assert snap.count("2.0.0") == 2 and snap.count("2.0.0", "Pending") == 1 and snap.count("1.0.0") == 2


def test_plants_layout_matches_the_demo_selectors() -> None:
    spec = layout.FleetSpec("k", "ns", 12, 2, "/tmp/x", (), app="digit-reader", label_layout="plants")
    labels = [layout.labels(spec, i) for i in range(spec.devices)]
    assert {lb["app"] for lb in labels} == {"digit-reader"}
    assert {lb["edgefleet.io/hardware-class"] for lb in labels} == {"x86-avx2"}
    pairs = collections.Counter((lb["edgefleet.io/site"], lb["edgefleet.io/line"]) for lb in labels)
    assert len(pairs) == len(layout.PLANTS) * layout.PLANT_LINES and set(pairs.values()) == {2}


def test_sockets_are_per_device_and_off_by_default() -> None:
    assert layout.socket_path(SPEC, 3) is None
    spec = layout.FleetSpec("k", "ns", 3, 1, "/tmp/x", (), sockets_dir="/run/fleet")
    assert [str(layout.socket_path(spec, i)) for i in range(3)] == [f"/run/fleet/sim-0000{i}.sock" for i in range(3)]
    assert layout.FleetSpec.from_json(spec.to_json()) == spec


def test_unknown_label_layout_is_refused() -> None:
    with pytest.raises(ValueError, match="label_layout must be one of spread, plants"):
        layout.FleetSpec("k", "ns", 3, 1, "/tmp/x", (), label_layout="plant")
