"""Loading and running compilers inside the compile worker process.

A compiler is referenced as ``module:function`` so the reference pickles and the worker imports the code
itself (the worker is started with ``spawn``, not ``fork``, so it never inherits the operator's event loop or
threads).
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


__all__ = ["load_compiler", "run_in_worker"]
