"""Hardware classes: what a compile target runs on, as far as choosing a variant is concerned.

A :class:`Hardware` names the instruction-set features that change relative kernel speed (INT8 dot-product, AMX and
native FP16 instructions), the execution providers and the intra-op threads a device gives the model, and the
hardware class those features make (:func:`edgefleet.core.hwclass.classify`). Candidates are timed on the compile host
(:func:`host`, its features as this process can use them: :func:`edgefleet.adapters.cpu.usable_flags`). The host's
timings decide for a target only when the host is of the target's class; for any other class the numbers come from
devices of that class (:mod:`edgefleet.compiler.selection`, rule 4).
"""

from __future__ import annotations

import dataclasses
import platform

from edgefleet.adapters import cpu
from edgefleet.core import hwclass


@dataclasses.dataclass(frozen=True)
class Hardware:
    """A hardware class: instruction-set features, execution providers and the threads a model gets."""

    name: str
    features: frozenset[str]
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int = 1
    arch: str = dataclasses.field(default_factory=platform.machine)

    @property
    def hardware_class(self) -> str:
        """The class these features make (see :mod:`edgefleet.core.hwclass`)."""
        return hwclass.classify(self.arch, self.features)


def host(name: str = "host", threads: int = 1) -> Hardware:
    """This machine as a hardware class."""
    return Hardware(name=name, features=cpu_features(), threads=threads)


def cpu_features() -> frozenset[str]:
    """Instruction-set flags of this host as this process can use them (``/proc/cpuinfo``; empty elsewhere)."""
    return cpu.usable_flags(cpu.cpuinfo_flags())


__all__ = ["Hardware", "cpu_features", "host"]
