"""Fixtures for compiler tests: the signing keys (the committed example models and how the tests compile them are in
:mod:`edgefleet.testing.compile_fixtures`)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle


@pytest.fixture(scope="session")
def signing_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@pytest.fixture(scope="session")
def other_key() -> ed25519.Ed25519PrivateKey:
    return bundle.generate_key()
