"""Loading and running compilers inside the compile worker process.

A compiler is referenced as ``module:function`` so the reference pickles and the worker imports the code itself (the
worker is started with ``spawn``, not ``fork``, so it never inherits the operator's event loop or threads).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from edgefleet.core import compiling, errors


def load_compiler(reference: str) -> Callable[[compiling.CompileRequest], compiling.CompileResult]:
    """Import ``module:function``; raises InvalidSpecError naming what is wrong."""
    module_name, _, attribute = reference.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise errors.InvalidSpecError(
            f"compiler {reference!r} cannot be loaded ({exc}); set EDGEFLEET_COMPILER to module:function",
            reason="CompilerMissing",
        ) from exc
    if not callable(function):
        raise errors.InvalidSpecError(f"compiler {reference!r} is not callable", reason="CompilerMissing")
    compiler: Callable[[compiling.CompileRequest], compiling.CompileResult] = function
    return compiler


def run_in_worker(reference: str, request: compiling.CompileRequest) -> compiling.CompileResult:
    """Entry point inside the worker process."""
    return load_compiler(reference)(request)


def optimise(request: compiling.CompileRequest) -> compiling.CompileResult:
    """The optimising compiler (:func:`edgefleet.compiler.compile_model`) as an operator compile job.

    Fetches the source model and the target's evaluation/calibration sets (digests checked), compiles for the target on
    this host's instruction set, and returns the model and manifest for the operator to sign. The compiler signs its own
    bundle too; that one is discarded, with a throwaway key, because the signing key never enters the worker. A budget
    no variant meets becomes :class:`~edgefleet.core.compiling.AccuracyGateError` carrying the compiler's report.
    """
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from edgefleet.adapters import passthrough
    from edgefleet.api import modeldeployment
    from edgefleet.compiler import compiler

    spec = modeldeployment.ModelDeploymentSpec.model_validate(request.spec)
    target = next(t for t in spec.compile.targets if t.name == request.target)
    source = passthrough.fetch(spec.model.uri, spec.model.sha256)
    evaluation = passthrough.fetch(target.evaluation.uri, target.evaluation.sha256)
    calibration = (
        passthrough.fetch(target.calibration.uri, target.calibration.sha256) if target.calibration is not None else None
    )
    try:
        result = compiler.compile_model(
            source,
            target,
            spec.model.task,
            evaluation=evaluation,
            calibration=calibration,
            model_name=spec.model.name,
            model_version=spec.model.version,
            signing_key=ed25519.Ed25519PrivateKey.generate(),
            hardware=compiler.host_hardware(name=target.name),
        )
    except errors.InvalidSpecError as exc:
        if exc.reason == "AccuracyBudgetUnreachable":
            raise compiling.AccuracyGateError(str(exc)) from None
        raise
    manifest = {k: v for k, v in result.manifest.items() if k != "files"}
    precision = str(manifest.get("variant", {}).get("precision", "fp32"))
    if precision not in ("int8", "fp16", "fp32"):
        raise errors.InvalidSpecError(f"compiler chose unknown precision {precision!r}", reason="CompilerError")
    return compiling.CompileResult(
        model=result.model,
        manifest=manifest,
        precision=precision,  # type: ignore[arg-type]
        variant=result.selected.name,
        accuracy_delta=result.accuracy_delta,
        speedup=result.speedup,
    )


__all__ = ["load_compiler", "optimise", "run_in_worker"]
