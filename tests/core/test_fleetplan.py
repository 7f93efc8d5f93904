"""The pure plan: diffs and wave previews."""

from __future__ import annotations

from pathlib import Path

import yaml

from edgefleet.api import edgedevice, modeldeployment
from edgefleet.core import fleetplan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "fleet-manifests"


def md(**changes: object) -> modeldeployment.ModelDeployment:
    value = yaml.safe_load((EXAMPLES / "base" / "weld-defect-classifier.yaml").read_text())
    for dotted, new in changes.items():
        node = value
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = new
    return modeldeployment.ModelDeployment.model_validate(value)


def devices() -> list[edgedevice.EdgeDevice]:
    docs = yaml.safe_load_all((EXAMPLES / "sites" / "plant-north" / "devices.yaml").read_text())
    return [edgedevice.EdgeDevice.model_validate(d) for d in docs]


def test_version_bump_is_one_change_with_waves() -> None:
    base, head = md(), md(spec__model__version="1.4.0")
    result = fleetplan.compare([base], [head], devices())
    (change,) = result.changed
    assert change.action == "changed"
    assert [(c.path, c.before, c.after) for c in change.changes] == [("spec.model.version", "1.3.0", "1.4.0")]
    (rollout,) = result.rollouts
    weld_devices = [
        d for d in devices() if d.metadata.labels and d.metadata.labels["edgefleet.io/role"] == "weld-inspection"
    ]
    assert len(rollout.devices) == len(weld_devices) == 12
    per_wave = [sum(1 for d in rollout.devices if d.wave == w) for w in (1, 2, 3)]
    assert per_wave == [2, 4, 6]  # ceil(10% of 12) = 2, ceil(50%) = 6 -> +4, rest 6
    targets = {d.device: d.target for d in rollout.devices}
    assert targets["plant-north-line-3-weld-01"] == "arm64-a72"
    assert targets["plant-north-line-1-weld-01"] == "x86-avx2"


def test_unchanged_objects_produce_no_rollout() -> None:
    result = fleetplan.compare([md()], [md()], devices())
    assert result.changed == () and result.rollouts == ()


def test_added_and_removed() -> None:
    other = md()
    renamed = modeldeployment.ModelDeployment.model_validate({**other.to_wire(), "metadata": {"name": "weld-v2"}})
    result = fleetplan.compare([other], [renamed], [])
    assert [(o.name, o.action) for o in result.changed] == [
        ("weld-defect-classifier", "removed"),
        ("weld-v2", "added"),
    ]
    markdown = fleetplan.to_markdown(result, "main", "pr")
    assert "| removed | ModelDeployment" in markdown and "| added | ModelDeployment" in markdown


def test_plan_is_deterministic() -> None:
    a = fleetplan.compare([md()], [md(spec__model__version="2.0.0")], devices())
    b = fleetplan.compare([md()], [md(spec__model__version="2.0.0")], list(reversed(devices())))
    assert a == b


def test_unreachable_devices_are_marked_and_kept_out_of_the_canary_waves() -> None:
    base, head = md(), md(spec__model__version="1.4.0")
    first = fleetplan.compare([base], [head], devices())
    (preview,) = first.rollouts
    canaries = [d.device for d in preview.devices if d.wave == 1]
    lost = {(d.namespace, d.device) for d in preview.devices if d.device in canaries}
    result = fleetplan.compare([base], [head], devices(), unreachable=lost)
    (rollout,) = result.rollouts
    marked = {d.device for d in rollout.unreachable}
    assert marked == set(canaries)
    wave1 = [d.device for d in rollout.devices if d.wave == 1]
    assert len(wave1) == len(canaries) and not set(wave1) & marked, "reachable devices take their place"
    assert all(d.wave == 3 for d in rollout.unreachable)
    text = fleetplan.to_markdown(result, "main", "pr")
    assert f"{canaries[0]} (unreachable)" in text and "2 targeted devices are unreachable now" in text
    assert set(result.to_json()["rollouts"][0]["unreachable"]) == marked


def test_markdown_puts_each_change_on_its_own_row_readable_in_an_80_column_log() -> None:
    base = md()
    head = md(spec__model__version="1.4.0", spec__model__uri="https://models.example.com/weld-defect/1.4.0/model.onnx")
    text = fleetplan.to_markdown(fleetplan.compare([base], [head], devices()), "main", "pr")
    rows = [line for line in text.splitlines() if "`spec.model." in line]
    assert len(rows) == 2 and rows[0].startswith("| changed | ModelDeployment |") and rows[1].startswith("| | | | |")
    assert "<br>" not in text
    # Rendered the way a terminal or CI log shows Markdown (rich, 80 columns): the two changes stay apart.
    import io

    from rich.console import Console
    from rich.markdown import Markdown

    out = io.StringIO()
    Console(file=out, width=80, force_terminal=False).print(Markdown(text))
    rendered = out.getvalue().splitlines()
    (version,) = [line for line in rendered if "spec.model.version" in line]
    assert "spec.model.uri" not in version
    assert any(line.strip().startswith("spec.model.uri") for line in rendered)
