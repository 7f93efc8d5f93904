"""The fp32 packager: the source model unchanged, with a complete manifest and itself as the only candidate."""

from __future__ import annotations

import hashlib
import pathlib

import numpy as np
import pytest

from edgefleet.compiler import jobs, packager
from edgefleet.core import errors, golden
from edgefleet.testing import models
from edgefleet.testing import rollout as sim


def request(url: str, data: bytes, task: str = "regression") -> jobs.CompileRequest:
    wire = sim.spec().model_dump(by_alias=True, mode="json", exclude_none=True)
    wire["model"].update(uri=f"{url}/model.onnx", sha256=hashlib.sha256(data).hexdigest(), task=task)
    return jobs.CompileRequest(wire, "arm64")


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_packages_the_source_as_is_with_golden_samples(tmp_path: pathlib.Path, task: str) -> None:
    data = models.adder(2.5)
    (tmp_path / "model.onnx").write_bytes(data)
    with models.served(tmp_path) as url:
        result = packager.compile_fp32(request(url, data, task))
    assert result.model == data
    assert (result.precision, result.variant) == ("fp32", "fp32-passthrough")
    assert result.speedup == 1.0 and result.accuracy_delta == 0.0  # what the operator records in status
    assert [c.name for c in result.candidates] == ["fp32-passthrough"] and "fp32-passthrough" in result.report
    manifest = result.manifest
    assert "files" not in manifest
    assert manifest["target"]["name"] == "arm64" and manifest["variant"]["reason"] == "packaged as is"
    assert manifest["io"]["inputs"] == [{"name": "x", "dtype": "tensor(float)", "shape": ["batch", 4]}]
    assert result.golden is not None
    decoded = golden.decode(manifest["golden"], result.golden)
    assert len(decoded.samples) == 2
    for sample in decoded.samples:
        assert np.allclose(sample.outputs["y"], sample.inputs["x"] + 2.5)


def test_a_file_that_is_not_onnx_is_an_invalid_model(tmp_path: pathlib.Path) -> None:
    data = b"not onnx"
    (tmp_path / "model.onnx").write_bytes(data)
    with models.served(tmp_path) as url, pytest.raises(errors.InvalidSpecError, match="not a loadable ONNX") as info:
        packager.compile_fp32(request(url, data))
    assert info.value.reason is errors.Reason.INVALID_MODEL
