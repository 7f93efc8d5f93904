"""Canary order: deterministic, independent of input order, spread across lines (table + Hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.api import common
from edgefleet.core import canary


def fleet(lines: dict[str, int]) -> dict[str, dict[str, str]]:
    return {
        f"{line}-{i}": {common.LABEL_SITE: "s", common.LABEL_LINE: line}
        for line, size in lines.items()
        for i in range(size)
    }


def test_count_for_weight_table() -> None:
    table = [(0, 10, 0), (1, 10, 1), (10, 10, 1), (11, 10, 2), (50, 5, 3), (100, 5, 5), (30, 0, 0)]
    for weight, total, expected in table:
        assert canary.count_for_weight(weight, total) == expected, (weight, total)


def test_waves_assign_each_device_once() -> None:
    ordered = [f"d{i}" for i in range(10)]
    result = canary.waves(ordered, [10, 50, 100])
    assert [sum(1 for w in result.values() if w == i) for i in range(3)] == [1, 4, 5]


def test_small_line_is_not_entirely_canary_at_low_weight() -> None:
    devices = fleet({"big": 20, "small": 2, "single": 1})
    ordered = canary.order(devices, "weld")
    first = set(ordered[: canary.count_for_weight(10, len(devices))])
    assert not {"small-0", "small-1"} <= first
    assert "single-0" not in first


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.sampled_from(list("abcdef")), st.integers(1, 12), min_size=1),
    st.text(min_size=1, max_size=8),
)
def test_order_is_a_permutation_independent_of_input_order(lines: dict[str, int], salt: str) -> None:
    devices = fleet(lines)
    forward = canary.order(devices, salt)
    backward = canary.order(dict(reversed(list(devices.items()))), salt)
    assert forward == backward
    assert sorted(forward) == sorted(devices)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(list("abcdef")), st.integers(2, 12), min_size=2), st.integers(1, 49))
def test_no_line_of_two_or_more_is_entirely_canary_below_half(lines: dict[str, int], weight: int) -> None:
    devices = fleet(lines)
    chosen = set(canary.order(devices, "x")[: canary.count_for_weight(weight, len(devices))])
    for line, size in lines.items():
        members = {f"{line}-{i}" for i in range(size)}
        if len(chosen) < len(devices) // 2:
            assert not members <= chosen, (line, size, weight)
