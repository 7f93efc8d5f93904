"""Deterministic canary order: which devices get a new revision first, spread across sites and lines.

Every device gets a rank in ``(0, 1)``: inside its (site, line) group devices are ordered by a stable hash of
``salt/name`` and the i-th of n gets rank ``i / (n + 1)`` (i from 1). Devices are then sorted by rank (hash breaks
ties). Taking the first ``ceil(weight% * N)`` devices therefore takes about ``weight%`` of every line, and a line
of n devices becomes entirely canary only once the cut passes rank ``n / (n + 1)`` (at least 1/2): small lines are
never all canary at a 10 % step. The order depends only on names, labels and the salt, never on list order, so
the operator, ``edgefleet plan`` and a restarted operator all agree.

Worked example: lines A = {a1, a2, a3} and B = {b1}. Ranks: A's three devices get 1/4, 2/4, 3/4 in hash order,
b1 gets 1/2. A 25 % step over 4 devices takes 1 device: A's first; a 50 % step takes A's first and b1 (rank 1/2
ties with A's second; the hash decides).

The operator adds one rule on top (:func:`line_keepers`): below 100 % the last device of every line in this
order stays on stable, so no line is ever entirely canary before the final step, however small it is. Growing the
weight takes a longer prefix of the same order, so canaries never change hands between steps.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence

from edgefleet.api import common


def stable_hash(salt: str, name: str) -> int:
    """64-bit stable hash of ``salt/name`` (pure, identical across processes and Python versions)."""
    return int.from_bytes(hashlib.sha256(f"{salt}/{name}".encode()).digest()[:8], "big")


def line_of(labels: Mapping[str, str]) -> tuple[str, str]:
    """The (site, line) a device's labels place it on (pure).

    >>> line_of({common.LABEL_SITE: "s1", common.LABEL_LINE: "l2"}), line_of({})
    (('s1', 'l2'), ('', ''))
    """
    return labels.get(common.LABEL_SITE, ""), labels.get(common.LABEL_LINE, "")


def order(devices: Mapping[str, Mapping[str, str]], salt: str) -> list[str]:
    """Device names in canary order; ``devices`` maps name -> labels (pure).

    >>> order({"a": {}, "b": {}}, "x") == order({"b": {}, "a": {}}, "x")
    True
    """
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name, labels in devices.items():
        groups[line_of(labels)].append(name)
    ranked: list[tuple[float, int, str]] = []
    for members in groups.values():
        members.sort(key=lambda n: (stable_hash(salt, n), n))
        size = len(members)
        for i, name in enumerate(members, start=1):
            ranked.append((i / (size + 1), stable_hash(salt, name), name))
    ranked.sort()
    return [name for _, _, name in ranked]


def count_for_weight(weight: int, total: int) -> int:
    """Devices updated at ``weight`` percent of ``total`` (pure): ceil, at least 1 when weight > 0.

    >>> [count_for_weight(w, 7) for w in (0, 10, 50, 100)]
    [0, 1, 4, 7]
    """
    if total <= 0 or weight <= 0:
        return 0
    return min(total, max(1, math.ceil(weight * total / 100)))


def line_keepers(devices: Mapping[str, Mapping[str, str]], salt: str) -> set[str]:
    """The last device of each (site, line) in :func:`order`: it becomes canary only at 100 % (pure).

    >>> sorted(line_keepers({"a1": {common.LABEL_LINE: "a"}, "a2": {common.LABEL_LINE: "a"},
    ...                      "b1": {common.LABEL_LINE: "b"}}, "x")) in (["a1", "b1"], ["a2", "b1"])
    True
    """
    last: dict[tuple[str, str], str] = {}
    for name in order(devices, salt):
        last[line_of(devices[name])] = name
    return set(last.values())


def waves(ordered: Sequence[str], weights: Sequence[int], keepers: Collection[str] = ()) -> dict[str, int]:
    """Index (into ``weights``) of the first setWeight step that updates each device (pure).

    ``keepers`` (see :func:`line_keepers`) are only updated by a 100 % step, as the operator does.

    >>> waves(["a", "b", "c", "d"], [25, 100])
    {'a': 0, 'b': 1, 'c': 1, 'd': 1}
    >>> waves(["a", "b", "c", "d"], [50, 100], keepers={"b"})
    {'a': 0, 'c': 0, 'b': 1, 'd': 1}
    """
    out: dict[str, int] = {}
    for index, weight in enumerate(weights):
        eligible = [n for n in ordered if weight >= 100 or n not in keepers]
        for name in eligible[: count_for_weight(weight, len(ordered))]:
            out.setdefault(name, index)
    return out


__all__ = ["count_for_weight", "line_keepers", "line_of", "order", "stable_hash", "waves"]
