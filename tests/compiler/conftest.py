"""Fixtures for compiler tests: the committed example models and a signing key."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle

# Fewer, shorter timing rounds than the default: tests check decisions, benchmarks report speed.


@pytest.fixture(scope="session")
def signing_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@pytest.fixture(scope="session")
def other_key() -> ed25519.Ed25519PrivateKey:
    return bundle.generate_key()
