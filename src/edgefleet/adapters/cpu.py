"""The CPU's instruction-set features as this process can use them (adapter: ``/proc/cpuinfo`` and one syscall).

``/proc/cpuinfo`` lists what the CPU has. AMX is more: Linux hands out the tile state per process on request
(``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``, kernel 5.16+), and onnxruntime uses its AMX kernels only
when that request succeeds. :func:`usable_flags` therefore drops the ``amx_*`` flags when the request fails (an older
kernel, or a process confined by a seccomp policy that denies it), so a device reports the class its model really
runs on. The request is what onnxruntime itself makes, so asking here grants nothing it would not take anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import pathlib
import platform

_ARCH_PRCTL = 158  # x86-64 syscall number
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18


def cpuinfo_flags(proc: pathlib.Path = pathlib.Path("/proc")) -> frozenset[str]:
    """Every flag ``/proc/cpuinfo`` lists for the first CPU (empty where it cannot be read)."""
    try:
        text = (proc / "cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def amx_usable() -> bool:
    """Whether this process may use AMX tiles (the kernel granted the tile data state)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return int(libc.syscall(_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA)) == 0
    except (OSError, AttributeError):
        return False


def usable_flags(flags: frozenset[str]) -> frozenset[str]:
    """``flags`` without the AMX flags when this process cannot use AMX."""
    if any(f.startswith("amx") for f in flags) and not amx_usable():
        return frozenset(f for f in flags if not f.startswith("amx"))
    return flags


__all__ = ["amx_usable", "cpuinfo_flags", "usable_flags"]
