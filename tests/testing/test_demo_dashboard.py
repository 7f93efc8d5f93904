"""When the demo takes its dashboard screenshots (the moments are pure; the demo itself runs them for real)."""

from __future__ import annotations

from edgefleet.testing import demo_dashboard


def test_mid_rollout_is_a_canary_on_some_devices_but_not_all() -> None:
    moment = demo_dashboard.canary_out("1.1.0")
    status = {"canaryRevision": "1.1.0-abc"}
    assert moment(status, {"a": {"activeVersion": "1.1.0"}, "b": {"activeVersion": "1.0.0"}})
    assert not moment(status, {"a": {"activeVersion": "1.1.0"}, "b": {"activeVersion": "1.1.0"}})
    assert not moment(status, {"a": {"activeVersion": "1.0.0"}})
    assert not moment({"canaryRevision": "1.2.0-def"}, {"a": {"activeVersion": "1.1.0"}, "b": {}})
