"""Unit tests of the small pieces: journal store, config loading, capability detection, telemetry allow-list."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from edgefleet.api.edgedevice import EdgeDeviceStatus
from edgefleet.core.errors import InvalidSpecError
from edgefleet.edge_reconciler import capabilities, config, main, state, telemetry


def test_write_atomic_leaves_old_content_when_interrupted(tmp_path: Path) -> None:
    target = tmp_path / "journal.json"
    state.write_atomic(target, b"old")

    class Cut(Exception):
        pass

    def cut() -> None:
        raise Cut

    with pytest.raises(Cut):
        state.write_atomic(target, b"new content", midway=cut)
    assert target.read_bytes() == b"old"
    state.write_atomic(target, b"new content")
    assert target.read_bytes() == b"new content"


def test_store_roundtrip_and_garbage_collection(tmp_path: Path) -> None:
    store = state.Store(tmp_path)
    digest = "sha256:" + "1" * 64
    rec = state.ModelRecord(
        name="demo",
        active="a",
        slots={"a": state.SlotRecord(digest=digest, version="1.0.0", revision="r")},
        install=state.InstallRecord(digest="sha256:" + "2" * 64, step="downloading", slot="b"),
    )
    store.update_model(rec)
    store.slot_path("demo", "a").write_bytes(b"A")
    store.slot_path("demo", "b").write_bytes(b"stale")
    store.part_path("sha256:" + "2" * 64).write_bytes(b"partial")
    store.part_path("sha256:" + "3" * 64).write_bytes(b"abandoned")
    (store.slots / "gone").mkdir()
    (store.slots / "gone" / "a.bundle").write_bytes(b"x")
    removed = {p.name for p in store.collect_garbage()}
    assert removed == {"b.bundle", "3" * 64 + ".part", "a.bundle"}
    assert store.slot_path("demo", "a").read_bytes() == b"A"
    assert store.part_path("sha256:" + "2" * 64).exists()
    assert not (store.slots / "gone").exists()
    again = state.Store(tmp_path)
    assert again.journal == store.journal
    assert again.journal.view()["demo"].active_digest == digest


def test_config_file_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        yaml.safe_dump({"deviceName": "cam-7", "labels": {"a": "1"}, "api": {"mode": "plain"}, "trustKeys": ["k1"]})
    )
    args = main.build_parser().parse_args(
        ["--config", str(path), "--api-url", "http://127.0.0.1:9999", "--label", "b=2", "--trust-key", "k2",
         "--port", "0", "--namespace", "factory-1"]
    )  # fmt: skip
    cfg = main.load_config(args)
    assert cfg.device_name == "cam-7" and cfg.namespace == "factory-1"
    assert cfg.api.url == "http://127.0.0.1:9999" and cfg.api.mode == "plain"
    assert cfg.labels == {"a": "1", "b": "2"}
    assert [str(p) for p in cfg.trust_keys] == ["k1", "k2"]
    assert cfg.server.port == 0


def test_config_errors_say_where_and_what(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("deviceName: Not_A_Name\nserver: {port: 99999}\n")
    with pytest.raises(InvalidSpecError) as info:
        config.load(path, {})
    message = str(info.value)
    assert str(path) in message and "deviceName" in message and "server.port" in message


def test_cpu_flags_and_detection() -> None:
    text = "processor\t: 0\nflags\t\t: fpu sse4_2 avx2 avx512f avx512_vnni weird\n"
    assert capabilities.cpu_flags(text) == ["avx2", "avx512_vnni", "avx512f", "sse4_2"]
    assert capabilities.cpu_flags("Features\t: fp asimd asimddp\n") == ["asimd", "asimddp"]
    caps = capabilities.detect()
    assert caps.cpu_count and caps.memory_bytes and "CPUExecutionProvider" in caps.execution_providers


def _aliases(model: type, seen: set[type] | None = None) -> set[str]:
    """Every wire key reachable from a pydantic model."""
    import typing

    from pydantic import BaseModel

    seen = seen or set()
    out: set[str] = set()
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        out.add(field.alias or name)
        stack = [field.annotation]
        while stack:
            t = stack.pop()
            if isinstance(t, type) and issubclass(t, BaseModel) and t not in seen:
                seen.add(t)
                out |= _aliases(t, seen)
            stack.extend(typing.get_args(t))
    return out


def test_allow_list_covers_exactly_the_status_schema() -> None:
    # A new status field must be reviewed for data residency and added to the allow-list on purpose.
    assert _aliases(EdgeDeviceStatus) == set(telemetry.ALLOWED_KEYS)


def test_outbound_refuses_keys_outside_the_allow_list() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    status = telemetry.device_status(
        journal=state.Journal(),
        phases={},
        verdicts={},
        capabilities=None,
        agent_version="0.1.0",
        previous_conditions=[],
        now=now,
    )
    wire = telemetry.outbound(status)
    assert {c["type"] for c in wire["conditions"]} == {"Ready", "Healthy"}
    with pytest.raises(telemetry.TelemetryError, match=r"status.models\[0\].inputs"):
        telemetry._check_keys({"models": [{"name": "a", "inputs": [1.0]}]}, "status")


def test_damaged_journal_is_moved_aside_and_the_device_starts_fresh(tmp_path: Path) -> None:
    (tmp_path / "journal.json").write_text('{"models": {"demo": {"active": "c"}}}')
    store = state.Store(tmp_path)
    assert store.journal == state.Journal()
    assert store.damaged is not None and "the install journal was damaged" in store.damaged
    kept = list(tmp_path.glob("journal.damaged-*.json"))
    assert len(kept) == 1 and kept[0].read_text() == '{"models": {"demo": {"active": "c"}}}'
    assert not (tmp_path / "journal.json").exists()


def test_an_invalid_edgedevice_is_refused_with_its_fields_and_reported_as_stalled() -> None:
    from edgefleet.adapters import protocols
    from edgefleet.edge_reconciler import control

    kube_control = control.KubeControl(None, "ns", "dev")  # type: ignore[arg-type]
    obj = {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "EdgeDevice",
        "metadata": {"name": "dev", "namespace": "ns", "generation": 7},
        "spec": {
            "models": [
                {
                    "name": "demo", "deployment": "demo", "version": "1.0.0", "revision": "r",
                    "artifact": {"uri": "http://[fe80::1]/x", "digest": "sha256:" + "a" * 64, "sizeBytes": 1,
                                 "precision": "fp32"},
                }
            ]
        },
    }  # fmt: skip
    refused = kube_control._parse(obj)
    assert isinstance(refused, protocols.SpecRefused) and refused.generation == 7
    assert refused.message.startswith("spec.models[0].artifact.uri: Value error, host fe80::1 is a link-local")
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    status = telemetry.device_status(
        journal=state.Journal(),
        phases={},
        verdicts={},
        capabilities=None,
        agent_version="0.1.0",
        previous_conditions=[],
        now=now,
        refused=refused,
    )
    conditions = {c.type: c for c in status.conditions}
    assert status.observed_generation == 7
    assert (conditions["Stalled"].status, conditions["Stalled"].reason) == ("True", "SpecRefused")
    assert (conditions["Ready"].status, conditions["Ready"].reason) == ("False", "SpecRefused")
    assert "spec.models[0].artifact.uri" in conditions["Stalled"].message
