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

from edgefleet.core import golden
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


CLIENT_ERRORS = frozenset({"BadInput", "BadShape", "UnknownInput", "MissingInput", "InvalidArgument", "BadRequest"})
"""Kinds that are the caller's mistake (answered 400, never counted against the model's health). ``InvalidArgument``
is onnxruntime's own verdict on an input; anything else onnxruntime raises is the model's failure."""


class InferenceError(IntegrityError):
    """A model could not be loaded or an inference could not run; ``kind`` is an error class safe to report (never
    carries tensor values). A subclass because the inference server and the serving metrics tell kinds apart."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def client_error(self) -> bool:
        """The request was wrong, not the model (:data:`CLIENT_ERRORS`)."""
        return self.kind in CLIENT_ERRORS


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

    def input_spec(self, name: str) -> TensorSpec:
        """The declared input ``name``; raises InferenceError (``UnknownInput``)."""
        spec = next((i for i in self.inputs if i.name == name), None)
        if spec is None:
            known = ", ".join(i.name for i in self.inputs)
            raise InferenceError(f"model has no input {name!r} (inputs: {known})", "UnknownInput")
        return spec

    def coerce(self, name: str, value: Any) -> np.ndarray[Any, Any]:
        """Turn a caller's value (array or nested lists) into the dtype and rank the model input declares; a fixed
        dimension must match. Total: any value that cannot be read is an InferenceError (``BadInput``/``BadShape``).
        """
        spec = self.input_spec(name)
        try:
            array = np.asarray(value, dtype=np.dtype(spec.dtype))
        except Exception as exc:  # ragged lists, strings, 10**400, dicts...: numpy raises several types
            raise InferenceError(f"input {name!r} cannot be read as {spec.dtype}", "BadInput") from exc
        if spec.shape and (
            array.ndim != len(spec.shape)
            or any(isinstance(d, int) and d >= 0 and d != n for d, n in zip(spec.shape, array.shape, strict=True))
        ):
            want = "[" + ", ".join(str(d) for d in spec.shape) + "]"
            raise InferenceError(f"input {name!r} has shape {list(array.shape)}, the model takes {want}", "BadShape")
        return array

    def check_feeds(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> None:
        """Symbolic dimensions shared by several inputs must agree (pure); raises InferenceError (``BadShape``).

        ``?`` is not a name: exporters (PaddlePaddle's among them) write it for every unknown dimension, so a
        ``[?, 3, ?, ?]`` image input takes any height and width.
        """
        seen: dict[str, int] = {}
        for spec in self.inputs:
            array = feeds.get(spec.name)
            if array is None or array.ndim != len(spec.shape):
                continue
            for dim, size in zip(spec.shape, array.shape, strict=True):
                if isinstance(dim, str) and dim not in ("None", "", "?") and seen.setdefault(dim, size) != size:
                    raise InferenceError(f"dimension {dim!r} differs between inputs", "BadShape")

    def run(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        """Run one inference; raises InferenceError with a value-free message on failure."""
        missing = [i.name for i in self.inputs if i.name not in feeds]
        if missing:
            raise InferenceError(f"missing inputs: {', '.join(missing)}", "MissingInput")
        self.check_feeds(feeds)
        try:
            results = self._session.run(self._output_names, dict(feeds))
        except Exception as exc:  # InvalidArgument, Fail, RuntimeException ... are not importable types
            # The vendor message names shapes and types, not values; keep only its class for telemetry.
            raise InferenceError(f"inference failed: {exc}", type(exc).__name__) from exc
        return dict(zip(self._output_names, results, strict=True))

    def check_golden(self, samples: golden.Golden) -> str | None:
        """Run the bundle's golden samples (:func:`edgefleet.adapters.bundle.golden_samples`); ``None`` when all
        match, else what failed (no tensor values).

        Every output must be finite and ``numpy.allclose(actual, expected, rtol, atol)``
        (:func:`edgefleet.core.golden.compare`). Total: a malformed or hostile sample is a returned problem, never an
        exception.
        """
        if not samples.samples:
            return "the manifest has no golden samples; a model is never switched to untested"
        for index, sample in enumerate(samples.samples):
            try:
                feeds = {k: self.coerce(k, v) for k, v in sample.inputs.items()}
            except InferenceError as exc:
                return f"golden sample {index} is malformed: {exc}"
            try:
                actual = self.run(feeds)
            except InferenceError as exc:
                return f"golden sample {index} did not run: {exc}"
            problem = golden.compare(index, actual, sample.outputs, samples.rtol, samples.atol)
            if problem is not None:
                return problem
        return None


def execution_providers() -> list[str]:
    """Execution providers this onnxruntime build offers."""
    return list(ort.get_available_providers())


def runtime_version() -> str:
    """The onnxruntime version string."""
    return str(ort.__version__)


__all__ = ["CLIENT_ERRORS", "InferenceError", "ModelRuntime", "TensorSpec", "execution_providers", "runtime_version"]
