"""Run a command as a device of a lower hardware class: the same CPU without AMX (test harness).

``python -m edgefleet.testing.isa --deny-amx -- edgefleet-agent --config agent.yaml`` installs a seccomp filter that
makes ``arch_prctl(ARCH_REQ_XCOMP_PERM)`` fail with EPERM, then executes the command (filters survive ``execve``).
Linux grants the AMX tile state per process only on that request, so the command, and onnxruntime inside it, run
on the AVX-512/VNNI kernels exactly as on a CPU of the ``x86-64-vnni`` class (Ice Lake, Cascade Lake), and its agent
reports that class (:func:`edgefleet.adapters.cpu.usable_flags`).

What differs from such a physical device: everything else is this machine (the same cores, clock, caches and memory
bandwidth, and AVX-512 FP16 stays available), so only the AMX part of the difference between the classes is real.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import struct
import sys

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_AUDIT_ARCH_X86_64 = 0xC000003E
_ARCH_PRCTL = 158
_ARCH_REQ_XCOMP_PERM = 0x1023
_RET_ALLOW = 0x7FFF0000
_RET_EPERM = 0x00050000 | 1
# BPF opcodes: load word at absolute offset, jump if equal, return
_LD, _JEQ, _RET = 0x20, 0x15, 0x06


def _filter() -> bytes:
    def stmt(code: int, k: int) -> bytes:
        return struct.pack("HBBI", code, 0, 0, k)

    def jump(k: int, skip_if_not: int) -> bytes:
        return struct.pack("HBBI", _JEQ, 0, skip_if_not, k)

    # seccomp_data: nr at 0, arch at 4, args[0] (low word) at 16
    return b"".join(
        [
            stmt(_LD, 4),
            jump(_AUDIT_ARCH_X86_64, 5),
            stmt(_LD, 0),
            jump(_ARCH_PRCTL, 3),
            stmt(_LD, 16),
            jump(_ARCH_REQ_XCOMP_PERM, 1),
            stmt(_RET, _RET_EPERM),
            stmt(_RET, _RET_ALLOW),
        ]
    )


def deny_amx() -> None:
    """Make this process (and whatever it executes) unable to obtain the AMX tile state."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise SystemExit("--deny-amx only means something on x86-64")
    program = _filter()
    buffer = ctypes.create_string_buffer(program)

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    prog = Program(len(program) // 8, ctypes.addressof(buffer))
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--deny-amx", action="store_true", help="refuse the AMX tile state to the command")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    if args.deny_amx:
        deny_amx()
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main())
