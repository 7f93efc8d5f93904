"""A real OCI registry (CNCF distribution 2.8, Debian's docker-registry) on 127.0.0.1 with TLS and htpasswd auth,
once per session; tests push to repositories of their own."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle, oci
from edgefleet.edge_reconciler import config
from edgefleet.testing import artifact_server, registry
from edgefleet.testing.agent_harness import Harness

_repos = itertools.count()


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> registry.Certificates:
    return registry.certificates(tmp_path_factory.mktemp("registry-tls"))


@pytest.fixture(scope="session")
def origin(tmp_path_factory: pytest.TempPathFactory, tls: registry.Certificates) -> Iterator[registry.Registry]:
    with registry.running(tmp_path_factory.mktemp("origin"), tls, auth=registry.TEST_CREDENTIALS, name="origin") as reg:
        yield reg


@pytest.fixture(scope="session")
def token_origin(tmp_path_factory: pytest.TempPathFactory, tls: registry.Certificates) -> Iterator[registry.Registry]:
    """An origin with token auth (the Bearer flow): the kind distribution 2.8's pull-through caches can log in to."""
    root = tmp_path_factory.mktemp("token-origin")
    with registry.running(root, tls, auth=registry.TEST_CREDENTIALS, token_auth=True, name="token-origin") as reg:
        yield reg


@pytest.fixture(scope="session")
def signing_key() -> ed25519.Ed25519PrivateKey:
    return bundle.generate_key()


@pytest.fixture
def repository(origin: registry.Registry) -> str:
    """A repository prefix of this test's own on the origin."""
    return f"{origin.host}/t{next(_repos)}-{registry.stamp()}"


@pytest.fixture
def store(repository: str, origin: registry.Registry, tls: registry.Certificates) -> oci.OciStore:
    """The operator's registry store for this test's repository (credentials as the operator reads them)."""
    return oci.OciStore(
        repository,
        credentials=oci.credentials_from_docker_config(origin.docker_config(), "test"),
        ca_file=tls.ca_file,
    )


@pytest.fixture
def credentials_file(tmp_path: Path, origin: registry.Registry) -> Path:
    import json

    path = tmp_path / "registry-auth.json"
    path.write_text(json.dumps(origin.docker_config()))
    return path


@pytest.fixture
def agent_artifacts(tls: registry.Certificates, credentials_file: Path) -> config.ArtifactsConfig:
    """The agent's artifact settings: the test CA and the registry credentials file, no mirrors."""
    return config.ArtifactsConfig(ca_file=tls.ca_file, credentials_file=credentials_file)


@pytest.fixture
def artifacts() -> Iterator[artifact_server.ArtifactServer]:
    with artifact_server.running() as server:
        yield server


@pytest.fixture
def harness(
    tmp_path: Path, signing_key: ed25519.Ed25519PrivateKey, artifacts: artifact_server.ArtifactServer
) -> Harness:
    (tmp_path / "device").mkdir()
    return Harness(tmp_path / "device", signing_key, artifacts)
