"""The bad-input suite's counter as a fixture; the total is printed at the end of the run (``tests/conftest.py``)."""

from __future__ import annotations

import collections

import pytest

from edgefleet.testing.badinput import COUNTS


@pytest.fixture
def tried() -> collections.Counter[str]:
    return COUNTS
