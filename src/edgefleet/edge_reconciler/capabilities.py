"""What this device can run, detected once at start and reported in ``status.capabilities``.

The hardware class (:mod:`edgefleet.core.hwclass`) is named from the flags this process can use: AMX only when the
kernel grants the agent the tile state (:func:`edgefleet.adapters.cpu.usable_flags`), as onnxruntime needs it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from edgefleet.adapters import cpu, onnx_session
from edgefleet.api.edgedevice import Capabilities
from edgefleet.core import hwclass

# Flags that decide which compiled variant is fastest; the full list would be noise (and 64 entries at most).
INTERESTING_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "asimddp", "sve", "fphp", "asimdhp",
)  # fmt: skip


def cpu_flags(cpuinfo: str) -> list[str]:
    """Interesting instruction-set flags in ``/proc/cpuinfo`` text (pure).

    >>> cpu_flags("flags\\t: fpu sse4_2 avx2 fma\\n")
    ['avx2', 'fma', 'sse4_2']
    """
    found: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            found.update(f for f in value.split() if f in INTERESTING_FLAGS)
    return sorted(found)


def detect(proc: Path = Path("/proc")) -> Capabilities:
    """Detect architecture, flags, CPUs, memory and onnxruntime execution providers."""
    try:
        flags = cpu_flags((proc / "cpuinfo").read_text())
    except OSError:
        flags = []
    flags = sorted(cpu.usable_flags(frozenset(flags)))
    memory: int | None = None
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = None
    return Capabilities(
        arch=platform.machine() or None,
        cpu_flags=flags,
        cpu_count=os.cpu_count(),
        memory_bytes=memory,
        execution_providers=onnx_session.execution_providers(),
        onnxruntime_version=onnx_session.runtime_version(),
        hardware_class=hwclass.classify(platform.machine(), flags),
    )


__all__ = ["cpu_flags", "detect"]
