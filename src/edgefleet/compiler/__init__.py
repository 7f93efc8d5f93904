"""The model compiler: hardware-aware ONNX optimisation under an accuracy gate, into unsigned bundle members.

The whole compile pipeline lives here, one concept per module (the example models are built by
:mod:`edgefleet.testing.examples`):

- :mod:`~edgefleet.compiler.jobs`: what goes in (``CompileRequest``) and comes out (``CompiledModel``: model bytes,
  manifest, candidate table), and compilers named by ``module:function`` for the operator's worker processes;
- :mod:`~edgefleet.compiler.pipeline`: the optimising compiler, :func:`~edgefleet.compiler.pipeline.compile_model`;
- :mod:`~edgefleet.compiler.packager`: the fp32 packager (the baseline, no optimisation);
- :mod:`~edgefleet.compiler.sources`: fetching and reading the source model and datasets (limits, digests);
- :mod:`~edgefleet.compiler.datasets`, :mod:`~edgefleet.compiler.passes`, :mod:`~edgefleet.compiler.measurement`:
  adapters around numpy archives, onnx and onnxruntime;
- :mod:`~edgefleet.compiler.candidates` and :mod:`~edgefleet.compiler.sensitivity`: building, evaluating and timing
  variants, and the sensitivity-guided INT8 fallback;
- :mod:`~edgefleet.compiler.selection` and :mod:`~edgefleet.compiler.fidelity`: the pure decisions (gate, cost
  model, choice) and metrics; :mod:`~edgefleet.compiler.hardware`: hardware classes;
- :mod:`~edgefleet.compiler.manifest`: the bundle manifest of the chosen variant.

Nothing here signs: the operator's compile stage and ``edgefleet compile`` sign a ``CompiledModel`` where they publish
it (:func:`edgefleet.adapters.bundle.build`). Import the submodules (``from edgefleet.compiler import pipeline``).
This ``__init__`` deliberately imports none of them: the operator process imports :mod:`~edgefleet.compiler.jobs`
to hand jobs to its workers, and must not load onnx and onnxruntime for that.
"""

__all__ = [
    "candidates",
    "datasets",
    "fidelity",
    "hardware",
    "jobs",
    "manifest",
    "measurement",
    "packager",
    "passes",
    "pipeline",
    "selection",
    "sensitivity",
    "sources",
]
