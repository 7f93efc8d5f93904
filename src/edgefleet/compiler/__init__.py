"""The model compiler: hardware-aware ONNX optimisation under an accuracy gate, into signed bundles.

Entry point: :func:`compile_model` (used by the operator and ``edgefleet compile``). The decision logic is
pure and lives in :mod:`edgefleet.compiler.selection` (gate, cost model, choice) and
:mod:`edgefleet.compiler.fidelity` (metrics); :mod:`~edgefleet.compiler.passes`,
:mod:`~edgefleet.compiler.measure` and :mod:`~edgefleet.compiler.datasets` are the adapters around onnx and
onnxruntime (the example models are built by :mod:`edgefleet.testing.examples`).
"""

from edgefleet.compiler import compiler, datasets, fidelity, measure, passes, selection
from edgefleet.compiler.compiler import CompileResult, Hardware, Settings, compile_model, host_hardware

__all__ = [
    "CompileResult",
    "Hardware",
    "Settings",
    "compile_model",
    "compiler",
    "datasets",
    "fidelity",
    "host_hardware",
    "measure",
    "passes",
    "selection",
]
