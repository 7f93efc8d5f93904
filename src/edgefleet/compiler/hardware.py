"""Hardware classes: what a compile target runs on, as far as choosing a variant is concerned.

A :class:`Hardware` names the instruction-set features that change relative kernel speed (INT8 dot-product and
native FP16 instructions, see :mod:`edgefleet.compiler.selection`), the execution providers and the intra-op threads
a device gives the model. Candidates are timed on the compile host (:func:`host`); the selection's cost model projects
those timings onto the target's features.
"""

from __future__ import annotations

import dataclasses
import pathlib


@dataclasses.dataclass(frozen=True)
class Hardware:
    """A hardware class: instruction-set features, execution providers and the threads a model gets."""

    name: str
    features: frozenset[str]
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int = 1


def host(name: str = "host", threads: int = 1) -> Hardware:
    """This machine as a hardware class."""
    return Hardware(name=name, features=cpu_features(), threads=threads)


def cpu_features() -> frozenset[str]:
    """Instruction-set flags of this host (``/proc/cpuinfo`` on Linux; empty elsewhere)."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


__all__ = ["Hardware", "cpu_features", "host"]
