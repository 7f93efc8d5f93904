"""The demo runs from an installed package too: without a source checkout it builds the digits-cnn example itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.testing import demo_deployment


def test_the_committed_example_is_used_in_a_checkout(tmp_path: Path) -> None:
    assert demo_deployment.example_model(tmp_path) == demo_deployment.EXAMPLE
    assert not any(tmp_path.iterdir())


@pytest.mark.slow  # trains the digits CNN with numpy: ~7 s
def test_without_a_checkout_the_example_is_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_deployment, "EXAMPLE", tmp_path / "no-checkout" / "digits-cnn")
    built = demo_deployment.example_model(tmp_path / "example")
    assert sorted(p.name for p in built.iterdir()) == ["calibration.npz", "evaluation.npz", "model.onnx"]
    committed = demo_deployment.controlplane.REPO / "examples" / "models" / "digits-cnn" / "model.onnx"
    assert (built / "model.onnx").read_bytes() == committed.read_bytes()
