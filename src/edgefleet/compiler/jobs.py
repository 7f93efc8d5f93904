"""Compile jobs: what goes into a compiler and what comes out, and how a compiler is found by name.

A compiler is any picklable callable ``(CompileRequest) -> CompiledModel`` (:class:`Compiler`), named by a
``module:function`` reference so that the reference pickles and the worker process imports the code itself (the
operator starts its workers with ``spawn``, not ``fork``, so they never inherit its event loop or threads). Two ship
with edgefleet: :data:`OPTIMISING` (the default, :func:`edgefleet.compiler.pipeline.compile_request`) and
:data:`PACKAGER` (:func:`edgefleet.compiler.packager.compile_fp32`, the fp32 baseline).

A :class:`CompiledModel` is unsigned: the bundle's members (the model and its manifest, without ``files``) and the
numbers behind the choice. Whoever publishes the bundle signs it, once, with its own key
(:func:`edgefleet.adapters.bundle.build`): the operator's compile stage or ``edgefleet compile``. A compiler reports
a model that cannot meet its accuracy budget as ``InvalidSpecError(reason=Reason.ACCURACY_GATE_FAILED)`` with the
measured numbers in the message, and that error reaches the deployment's Stalled condition unchanged; other failures
use the other core errors.

The operator process imports this module, so it stays light: no onnx or onnxruntime (the compilers it names are
imported only inside the worker).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any, Protocol

from edgefleet.compiler import selection
from edgefleet.core import errors

OPTIMISING = "edgefleet.compiler.pipeline:compile_request"
PACKAGER = "edgefleet.compiler.packager:compile_fp32"
# References from before the compile pipeline moved into this package, so existing EDGEFLEET_COMPILER settings work.
_MOVED = {
    "edgefleet.adapters.compilers:optimise": OPTIMISING,
    "edgefleet.adapters.passthrough:compile_fp32": PACKAGER,
}
PRECISIONS = ("int8", "fp16", "fp32")


@dataclasses.dataclass(frozen=True)
class CompileRequest:
    """One compile job: the whole spec (as JSON, so it pickles) and the name of the target to compile for."""

    spec: dict[str, Any]
    target: str


@dataclasses.dataclass(frozen=True)
class CompiledModel:
    """An unsigned compile result: the bundle's members, the chosen variant, and every candidate's numbers.

    ``manifest`` is the agreed bundle manifest without ``files`` (signing adds it). It holds only deterministic fields,
    so equal inputs give equal manifests whenever the same variant is chosen; timings are in ``candidates`` and
    ``report``.
    """

    model: bytes
    manifest: Mapping[str, Any]
    selected: selection.Candidate
    candidates: tuple[selection.Candidate, ...]
    reason: str
    detail: str
    report: str

    @property
    def precision(self) -> selection.Precision:
        """The selected variant's precision."""
        return self.selected.precision

    @property
    def variant(self) -> str:
        """The selected variant's name."""
        return self.selected.name

    @property
    def reference(self) -> selection.Candidate:
        """The FP32 reference candidate (``fp32``), or the selected one when it is the only kind (a packager's)."""
        return next((c for c in self.candidates if c.name == "fp32"), self.selected)

    @property
    def speedup(self) -> float | None:
        """FP32 p50 latency over the selected variant's (``None`` when either was not measured)."""
        ref, sel = self.reference.latency, self.selected.latency
        if ref is None or sel is None or sel.p50 <= 0:
            return None
        return ref.p50 / sel.p50

    @property
    def accuracy_delta(self) -> float:
        """What the gate judged for the selected variant: accuracy drop or relative error against FP32."""
        return selection.severity(str(self.manifest["model"]["task"]), self.selected.fidelity)


class Compiler(Protocol):
    """A compiler: a picklable callable run in a worker process."""

    def __call__(self, request: CompileRequest) -> CompiledModel: ...


def load(reference: str) -> Compiler:
    """Import the compiler ``module:function``; raises InvalidSpecError naming what is wrong."""
    reference = _MOVED.get(reference, reference)
    module_name, _, attribute = reference.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise errors.InvalidSpecError(
            f"compiler {reference!r} cannot be loaded ({exc}); set EDGEFLEET_COMPILER to module:function",
            reason=errors.Reason.COMPILER_MISSING,
        ) from exc
    if not callable(function):
        raise errors.InvalidSpecError(f"compiler {reference!r} is not callable", reason=errors.Reason.COMPILER_MISSING)
    compiler: Compiler = function
    return compiler


def run(reference: str, request: CompileRequest) -> CompiledModel:
    """Entry point inside the worker process: load the compiler, compile, check what it chose."""
    result = load(reference)(request)
    if result.precision not in PRECISIONS:
        raise errors.InvalidSpecError(
            f"compiler chose unknown precision {result.precision!r}", reason=errors.Reason.COMPILER_ERROR
        )
    return result


__all__ = ["OPTIMISING", "PACKAGER", "CompileRequest", "CompiledModel", "Compiler", "load", "run"]
