"""``spec.model.uri`` as ``oci://registry/repo@sha256:...``: the compiler pulls the model from a real registry (pushed
by the real ``oras``: a plain ORAS artifact and a ModelPack-style tar layer) with the same digest pinning as https."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from edgefleet.api import modeldeployment
from edgefleet.compiler import sources
from edgefleet.core import errors
from edgefleet.core import oci as core_oci
from edgefleet.testing import models, oras, registry

pytestmark = pytest.mark.slow


def _push(origin: registry.Registry, repository: str, directory: Path, *files: str) -> str:
    out = oras.run(origin, "push", f"{repository}/model:src", *files, "--format", "json", cwd=directory)
    return f"oci://{repository}/model@{json.loads(out.stdout)['digest']}"


@pytest.fixture
def registry_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, origin: registry.Registry) -> None:
    config = tmp_path / "docker-config.json"
    config.write_text(json.dumps(origin.docker_config()))
    monkeypatch.setenv(sources.REGISTRY_CONFIG_ENV, str(config))
    monkeypatch.setenv("EDGEFLEET_OCI_CA_FILE", str(origin.tls.ca_file))


@pytest.mark.usefixtures("registry_env")
def test_compiler_fetches_a_model_from_an_oras_artifact(
    tmp_path: Path, origin: registry.Registry, repository: str
) -> None:
    model = models.adder(1.5)
    (tmp_path / "weld.onnx").write_bytes(model)
    uri = _push(origin, repository, tmp_path, "weld.onnx")
    sha = hashlib.sha256(model).hexdigest()
    assert modeldeployment.ModelSource(name="weld", version="1.0.0", uri=uri, sha256=sha, task="regression")
    assert sources.fetch(uri, sha) == model
    with pytest.raises(
        errors.InvalidSpecError, match=r"does not have the sha256 0{64} that spec\.model\.sha256 pins"
    ) as caught:
        sources.fetch(uri, "0" * 64)
    assert caught.value.reason == errors.Reason.SOURCE_DIGEST_MISMATCH
    wrong_manifest = uri[: -len("a" * 64)] + "0" * 64
    with pytest.raises(errors.InvalidSpecError) as missing:
        sources.fetch(wrong_manifest, sha)
    assert missing.value.reason == errors.Reason.SOURCE_MISSING


@pytest.mark.usefixtures("registry_env")
def test_compiler_fetches_a_model_from_a_modelpack_tar_layer(
    tmp_path: Path, origin: registry.Registry, repository: str
) -> None:
    model = models.adder(2.5)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("models/weld.onnx")
        info.size = len(model)
        tar.addfile(info, io.BytesIO(model))
    (tmp_path / "weights.tar").write_bytes(buffer.getvalue())
    uri = _push(origin, repository, tmp_path, "weights.tar:application/vnd.cncf.model.weight.v1.tar")
    assert sources.fetch(uri, hashlib.sha256(model).hexdigest()) == model


def test_oci_sources_must_pin_a_digest_and_follow_the_uri_rules() -> None:
    fields = {"name": "weld", "version": "1.0.0", "sha256": "a" * 64, "task": "regression"}
    for uri, message in (
        ("oci://registry.example/models/weld:1.0", "must pin a manifest digest"),
        ("oci://user:pw@registry.example/models/weld@sha256:" + "a" * 64, "must not carry credentials"),
        ("oci://169.254.169.254/models/weld@sha256:" + "a" * 64, "is a link-local address"),
    ):
        with pytest.raises(ValueError, match=message):
            modeldeployment.ModelSource(uri=uri, **fields)  # type: ignore[arg-type]
    assert core_oci.Reference.parse("oci://r.example:5000/a/b@sha256:" + "b" * 64).repository == "a/b"
