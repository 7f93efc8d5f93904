from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle
from edgefleet.testing import artifact_server
from edgefleet.testing.agent_harness import Harness


@pytest.fixture(scope="session")
def signing_key() -> ed25519.Ed25519PrivateKey:
    return bundle.generate_key()


@pytest.fixture
def artifacts() -> Iterator[artifact_server.ArtifactServer]:
    with artifact_server.running() as server:
        yield server


@pytest.fixture
def harness(
    tmp_path: Path, signing_key: ed25519.Ed25519PrivateKey, artifacts: artifact_server.ArtifactServer
) -> Harness:
    return Harness(tmp_path, signing_key, artifacts)
