"""Counts every hostile case the bad-input suite tries; the total is printed at the end of the run."""

from __future__ import annotations

import collections

import pytest

COUNTS: collections.Counter[str] = collections.Counter()


@pytest.fixture
def tried() -> collections.Counter[str]:
    return COUNTS
