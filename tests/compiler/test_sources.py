"""Fetching and reading compile inputs: http(s) only, size limits, pinned digests, errors naming the failed check."""

from __future__ import annotations

import hashlib
import pathlib

import pytest

from edgefleet.compiler import sources
from edgefleet.core import errors
from edgefleet.testing import models


def test_fetch_checks_the_pinned_digest(tmp_path: pathlib.Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"model bytes")
    with models.served(tmp_path) as url:
        assert sources.fetch(f"{url}/model.onnx", hashlib.sha256(b"model bytes").hexdigest()) == b"model bytes"
        with pytest.raises(errors.InvalidSpecError, match="do not have the sha256") as info:
            sources.fetch(f"{url}/model.onnx", "0" * 64)
    assert info.value.reason is errors.Reason.SOURCE_DIGEST_MISMATCH


def test_fetch_refuses_other_schemes() -> None:
    with pytest.raises(errors.InvalidSpecError, match="only http and https") as info:
        sources.fetch("file:///etc/passwd", "0" * 64)
    assert info.value.reason is errors.Reason.SOURCE_SCHEME


def test_a_missing_source_is_the_specs_fault(tmp_path: pathlib.Path) -> None:
    with models.served(tmp_path) as url, pytest.raises(errors.InvalidSpecError, match="HTTP 404") as info:
        sources.fetch(f"{url}/missing.onnx", "0" * 64)
    assert info.value.reason is errors.Reason.SOURCE_MISSING


def test_an_unreachable_server_is_transient() -> None:
    with pytest.raises(errors.TransientError):
        sources.fetch("http://127.0.0.1:9/model.onnx", "0" * 64)


def test_fetch_and_read_stop_at_the_limit(tmp_path: pathlib.Path) -> None:
    (tmp_path / "big.onnx").write_bytes(b"x" * 101)
    with models.served(tmp_path) as url, pytest.raises(errors.InvalidSpecError, match="larger than 100") as info:
        sources.fetch(f"{url}/big.onnx", "0" * 64, limit=100)
    assert info.value.reason is errors.Reason.SOURCE_TOO_LARGE
    with pytest.raises(errors.InvalidSpecError, match="model is larger than 100 bytes"):
        sources.read(tmp_path / "big.onnx", "model", limit=100)


def test_read_names_a_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errors.NotFoundError, match=r"nope\.npz: evaluation set not found"):
        sources.read(tmp_path / "nope.npz", "evaluation set")
