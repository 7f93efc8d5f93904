"""Canary selection: which devices receive a new revision first, chosen by stable hashing.

Goals, in order:

1. **Deterministic.** The same fleet and seed always give the same order, on any operator replica, after any
   restart. The seed is the deployment name plus the canary revision, so each new revision samples different
   devices while one rollout keeps its choice from step to step.
2. **Spread.** Take one device from every line of every site before a second device from any line, and
   alternate
   sites within each round, so a 10 % canary touches as many sites and lines as it can.
3. **No line entirely canary before 100 %.** The last device of each line (in hash order) is never a canary
   while
   the weight is below 100, so a bad model never stops a whole production line. A line of one device therefore
   waits for the final step.

Growing the weight takes a longer prefix of the same order, so canaries never change hands between steps.
Everything here is pure.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Sequence

from edgefleet.api import common


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a device sits: its name, site and line (empty strings when the labels are absent)."""

    name: str
    site: str
    line: str


def placement(name: str, labels: dict[str, str] | None) -> Placement:
    """A device's placement from its labels (pure)."""
    labels = labels or {}
    return Placement(name, labels.get(common.LABEL_SITE, ""), labels.get(common.LABEL_LINE, ""))


def _h(seed: str, *parts: str) -> str:
    return hashlib.sha256("\x00".join((seed, *parts)).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Ranked:
    """A device with its position in the canary order and whether it may be a canary below 100 %."""

    name: str
    position: int
    line_keeper: bool


def order(devices: Sequence[Placement], seed: str) -> list[Ranked]:
    """Rank ``devices`` for canary selection (pure).

    Worked example: sites A and B, A has lines 1 (3 devices) and 2 (1 device), B has line 1 (2 devices). Round
    0
    takes the first device of A/1, B/1 and A/2 (lines of a site alternate with the other site's); round 1
    takes
    the second device of A/1 and of B/1; the third device of A/1 comes last. The last device of every line
    (the
    only device of A/2, the second of B/1, the third of A/1) is a line keeper and becomes canary only at 100
    %.

    >>> fleet = [Placement(f"d{i}", s, l) for i, (s, l) in enumerate(
    ...     [("A", "1"), ("A", "1"), ("A", "1"), ("A", "2"), ("B", "1"), ("B", "1")])]
    >>> ranked = order(fleet, "seed")
    >>> sorted(r.name for r in ranked if r.line_keeper) == sorted(["d3"] + [
    ...     max((r for r in ranked if r.name in ln), key=lambda r: r.position).name
    ...     for ln in (["d0", "d1", "d2"], ["d4", "d5"])])
    True
    >>> order(fleet, "seed") == order(list(reversed(fleet)), "seed")
    True
    """
    lines: dict[tuple[str, str], list[Placement]] = defaultdict(list)
    for device in devices:
        lines[(device.site, device.line)].append(device)
    sites: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key in lines:
        sites[key[0]].append(key)
    site_rank = {s: i for i, s in enumerate(sorted(sites, key=lambda s: (_h(seed, "site", s), s)))}
    line_rank: dict[tuple[str, str], int] = {}
    for site, keys in sites.items():
        for i, key in enumerate(sorted(keys, key=lambda k: (_h(seed, "line", site, k[1]), k[1]))):
            line_rank[key] = i
    keyed = []
    for key, members in lines.items():
        members_sorted = sorted(members, key=lambda d: (_h(seed, "device", d.name), d.name))
        for rank, device in enumerate(members_sorted):
            keeper = rank == len(members_sorted) - 1
            keyed.append(
                ((rank, line_rank[key], site_rank[key[0]], _h(seed, "device", device.name)), device, keeper)
            )
    keyed.sort(key=lambda item: (item[0], item[1].name))
    return [Ranked(device.name, i, keeper) for i, (_, device, keeper) in enumerate(keyed)]


def target_count(weight: int, total: int) -> int:
    """How many of ``total`` devices a step of ``weight`` percent updates: ceil, so 10 % of 5 is 1 (pure).

    >>> [target_count(w, 20) for w in (1, 10, 25, 50, 100)]
    [1, 2, 5, 10, 20]
    >>> target_count(10, 0)
    0
    """
    return min(total, (weight * total + 99) // 100)


__all__ = ["Placement", "Ranked", "order", "placement", "target_count"]
