"""What a compiler is given and returns: plain data that crosses into the compile worker process.

A compiler is any picklable callable ``(CompileRequest) -> CompileResult`` (:class:`Compiler`). It signals a model that
cannot meet its accuracy budget by raising :class:`AccuracyGateError` with the measured numbers in the message; other
failures use :mod:`edgefleet.core.errors`. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Protocol

Precision = Literal["int8", "fp16", "fp32"]


@dataclasses.dataclass(frozen=True)
class CompileRequest:
    """One compile job: the whole spec (as JSON, so it pickles) and the target to compile for."""

    spec: dict[str, Any]
    target: str


@dataclasses.dataclass(frozen=True)
class CompileResult:
    """A compiled model, its manifest (the agreed bundle manifest, without ``files``) and headline numbers."""

    model: bytes
    manifest: dict[str, Any]
    precision: Precision
    variant: str | None = None
    accuracy_delta: float | None = None
    speedup: float | None = None


class AccuracyGateError(Exception):
    """No variant meets the accuracy budget; the message carries the measured numbers."""


class Compiler(Protocol):
    """A compiler: a picklable callable run in a worker process."""

    def __call__(self, request: CompileRequest) -> CompileResult: ...


__all__ = ["AccuracyGateError", "CompileRequest", "CompileResult", "Compiler", "Precision"]
