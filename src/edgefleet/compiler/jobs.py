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
imported only inside the worker). :func:`run` compiles in a supervised child process within the request's memory
budget (:func:`edgefleet.compiler.memory.run_bounded`): a compile that would exceed it is stopped and reported as
``InvalidSpecError(reason=CompileMemoryExceeded)``, which becomes the deployment's Stalled reason, instead of an
out-of-memory kill of the worker.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Mapping
from typing import Any, Protocol

from edgefleet.compiler import memory, selection
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
    """One compile job: the whole spec (as JSON, so it pickles) and the name of the target to compile for.

    ``memory_budget_bytes`` bounds the compile's resident memory. ``device_classes`` are the hardware classes the
    target's devices report (``status.capabilities.hardwareClass``); when the compile host is not of those classes its
    timings do not decide, and the result carries the in-budget alternatives for devices of the class to benchmark.
    """

    spec: dict[str, Any]
    target: str
    memory_budget_bytes: int = memory.DEFAULT_BUDGET_BYTES
    device_classes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Alternative:
    """Another in-budget variant, with its own unsigned bundle members, for devices to benchmark."""

    candidate: selection.Candidate
    model: bytes
    manifest: Mapping[str, Any]
    golden: bytes | None


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
    golden: bytes | None = None
    """The ``golden.bin`` member the manifest's ``golden`` entry describes (``None``: samples inline, schema 1)."""
    notes: tuple[str, ...] = ()
    """What the compile did besides building candidates (memory plan, golden samples, fallback), for people."""
    peak_rss_bytes: int | None = None
    bundle_bytes: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Each candidate's bundle size as it would be published (the selected one's is exact)."""
    hardware_class: str | None = None
    """The target's hardware class, when the compile host does not represent it (then ``alternatives`` are set)."""
    alternatives: tuple[Alternative, ...] = ()

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


def compile_in_child(reference: str, request: CompileRequest, progress: Any = None) -> CompiledModel:
    """The supervised child's work: load the compiler and compile, passing ``progress`` to a compiler that takes it
    (so a memory breach can say which step the compile was at)."""
    compiler = load(reference)
    if "progress" in inspect.signature(compiler).parameters:
        return compiler(request, progress=progress)  # type: ignore[call-arg]
    return compiler(request)


def run(reference: str, request: CompileRequest) -> CompiledModel:
    """Entry point inside the worker process: compile within the memory budget, check what it chose."""
    outcome, peak = memory.run_bounded(
        compile_in_child,
        (reference, request),
        request.memory_budget_bytes,
        what=f"the compile of target {request.target!r}",
        remedy=(
            "Raise the operator's EDGEFLEET_COMPILE_MEMORY_BYTES (and the pod's memory limit above it), or give "
            "spec.compile.targets[].calibration and .evaluation fewer or smaller samples."
        ),
    )
    result: CompiledModel = outcome
    if result.peak_rss_bytes is None:
        result = dataclasses.replace(result, peak_rss_bytes=peak)
    if result.precision not in PRECISIONS:
        raise errors.InvalidSpecError(
            f"compiler chose unknown precision {result.precision!r}", reason=errors.Reason.COMPILER_ERROR
        )
    return result


__all__ = ["OPTIMISING", "PACKAGER", "Alternative", "CompileRequest", "CompiledModel", "Compiler", "load", "run"]
