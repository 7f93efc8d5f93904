"""Hardware classes: which devices measure the same relative speed of compiled variants. Pure.

A class is named from the CPU architecture and the instruction-set features that change how fast INT8 and FP16
kernels are relative to FP32 in onnxruntime, strongest first:

=====================  ========================================================================================
``x86-64-amx``          AMX tiles usable by the process (``amx_int8`` and the kernel granted the tile state)
``x86-64-vnni``         AVX-512 VNNI or AVX-VNNI INT8 dot products, no usable AMX
``x86-64-avx512``       AVX-512F without VNNI
``x86-64-avx2``         AVX2 without AVX-512
``x86-64``              anything older
``arm64-i8mm``          Armv8.6 INT8 matrix multiply
``arm64-dotprod``       Armv8.2 dot product (``asimddp``)
``arm64``               anything older
=====================  ========================================================================================

Devices report the flags their agent detected (``status.capabilities.cpuFlags``) and this class
(``status.capabilities.hardwareClass``); the compiler names its own host the same way, so "does the compile host
represent this target?" is a string comparison.

>>> classify("x86_64", ["avx2", "avx512f", "avx512_vnni", "amx_int8", "amx_tile"])
'x86-64-amx'
>>> classify("x86_64", ["avx2", "avx512f", "avx512_vnni"])
'x86-64-vnni'
>>> classify("aarch64", ["asimd", "asimddp"])
'arm64-dotprod'
"""

from __future__ import annotations

from collections.abc import Iterable

X86 = ("x86_64", "amd64", "x86-64")
ARM = ("aarch64", "arm64")


def classify(arch: str | None, flags: Iterable[str]) -> str:
    """The hardware class of a CPU with these (usable) ``flags`` (pure); see the module docstring."""
    have = set(flags)
    machine = (arch or "").lower()
    if machine in ARM or have & {"asimd", "neon"}:
        if "i8mm" in have:
            return "arm64-i8mm"
        if "asimddp" in have:
            return "arm64-dotprod"
        return "arm64"
    if machine and machine not in X86:
        return machine
    if {"amx_int8", "amx_tile"} <= have:
        return "x86-64-amx"
    if have & {"avx512_vnni", "avx_vnni"}:
        return "x86-64-vnni"
    if "avx512f" in have:
        return "x86-64-avx512"
    if "avx2" in have:
        return "x86-64-avx2"
    return "x86-64"


__all__ = ["classify"]
