"""Counts every hostile case the bad-input suite (``tests/badinput``) tries; ``tests/conftest.py`` prints the total
at the end of the run."""

from __future__ import annotations

import collections

COUNTS: collections.Counter[str] = collections.Counter()
