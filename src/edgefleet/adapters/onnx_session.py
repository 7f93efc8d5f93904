"""ONNX Runtime sessions for the device: load verified model bytes, run them, check golden samples.

This is the only place the edge reconciler touches onnxruntime. Vendor exceptions become :class:`InferenceError`
(bad inputs from a caller, or a model that cannot run), an :class:`~edgefleet.core.errors.IntegrityError`: so nothing
above this module catches an onnxruntime type, and a caller that only needs "this model or input failed a check"
catches the core error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnxruntime as ort

from edgefleet.adapters import bundle
from edgefleet.core.errors import IntegrityError

_ORT_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


class InferenceError(IntegrityError):
    """A model could not be loaded or an inference could not run; ``kind`` is an error class safe to report (never
    carries tensor values). A subclass because the inference server and the serving metrics tell kinds apart."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """Name, numpy dtype name and shape (symbolic dims as strings) of one model input or output."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]


def _spec(arg: Any) -> TensorSpec:
    dtype = _ORT_DTYPES.get(arg.type)
    shape = tuple(d if isinstance(d, int) else str(d) for d in (arg.shape or []))
    return TensorSpec(arg.name, np.dtype(dtype).name if dtype is not None else str(arg.type), shape)


class ModelRuntime:
    """One loaded model. Thread-safe for :meth:`run` (onnxruntime sessions are), so many requests share it."""

    def __init__(self, model: bytes, *, intra_op_threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several unexported exception types
            raise InferenceError(f"onnxruntime could not load the model: {exc}", "LoadFailed") from exc
        self.inputs = tuple(_spec(a) for a in self._session.get_inputs())
        self.outputs = tuple(_spec(a) for a in self._session.get_outputs())
        self._output_names = [o.name for o in self.outputs]

    def coerce(self, name: str, value: Any) -> np.ndarray[Any, Any]:
        """Turn a caller's value (array or nested lists) into the dtype the model input expects."""
        spec = next((i for i in self.inputs if i.name == name), None)
        if spec is None:
            known = ", ".join(i.name for i in self.inputs)
            raise InferenceError(f"model has no input {name!r} (inputs: {known})", "UnknownInput")
        try:
            return np.asarray(value, dtype=np.dtype(spec.dtype))
        except (TypeError, ValueError) as exc:
            raise InferenceError(f"input {name!r} cannot be read as {spec.dtype}", "BadInput") from exc

    def run(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        """Run one inference; raises InferenceError with a value-free message on failure."""
        missing = [i.name for i in self.inputs if i.name not in feeds]
        if missing:
            raise InferenceError(f"missing inputs: {', '.join(missing)}", "MissingInput")
        try:
            results = self._session.run(self._output_names, dict(feeds))
        except Exception as exc:  # InvalidArgument, Fail, RuntimeException ... are not importable types
            # The vendor message names shapes and types, not values; keep only its class for telemetry.
            raise InferenceError(f"inference failed: {exc}", type(exc).__name__) from exc
        return dict(zip(self._output_names, results, strict=True))

    def check_golden(self, golden: Mapping[str, Any]) -> str | None:
        """Run the manifest's golden samples; ``None`` when all match, else what failed (no tensor values).

        Every output must be finite and ``numpy.allclose(actual, expected, rtol, atol)``.
        """
        samples = golden.get("samples") or []
        if not samples:
            return "the manifest has no golden samples; a model is never switched to untested"
        rtol = float(golden.get("rtol", 1e-5))
        atol = float(golden.get("atol", 1e-6))
        for index, sample in enumerate(samples):
            try:
                feeds = {k: bundle.decode_array(v) for k, v in sample["inputs"].items()}
                expected = {k: bundle.decode_array(v) for k, v in sample["outputs"].items()}
            except (bundle.BundleError, KeyError, AttributeError) as exc:
                return f"golden sample {index} is malformed: {exc}"
            try:
                actual = self.run(feeds)
            except InferenceError as exc:
                return f"golden sample {index} did not run: {exc}"
            for name, want in expected.items():
                got = actual.get(name)
                if got is None:
                    return f"golden sample {index}: the model has no output {name!r}"
                if not np.all(np.isfinite(got)):
                    return f"golden sample {index}: output {name!r} is not finite"
                if got.shape != want.shape or not np.allclose(got, want, rtol=rtol, atol=atol):
                    return f"golden sample {index}: output {name!r} is outside rtol={rtol}, atol={atol}"
        return None


def execution_providers() -> list[str]:
    """Execution providers this onnxruntime build offers."""
    return list(ort.get_available_providers())


def runtime_version() -> str:
    """The onnxruntime version string."""
    return str(ort.__version__)


__all__ = ["InferenceError", "ModelRuntime", "TensorSpec", "execution_providers", "runtime_version"]
