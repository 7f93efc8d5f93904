"""The committed example models (``examples/models/``) as compiler tests load and compile them.

:func:`load_example` reads one example's model and datasets, :func:`target` is a valid compile target for the host,
:func:`compile_example` compiles an example with :data:`FAST` timing effort (tests check decisions; benchmarks
report speed) and :func:`publish` signs the result as a publisher does.
"""

from __future__ import annotations

import dataclasses
import pathlib

from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle
from edgefleet.api import modeldeployment
from edgefleet.compiler import jobs, pipeline

# Only meaningful in a source checkout (examples/ is not installed with the package).
ROOT = pathlib.Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "models"
TASKS = {"digits-cnn": "classification", "vibration-ae": "anomaly-score"}
# Fewer, shorter timing rounds than the default: tests check decisions, benchmarks report speed.
FAST = pipeline.Effort(latency_rounds=5, round_seconds=0.01)


@dataclasses.dataclass(frozen=True)
class Example:
    name: str
    task: str
    model: bytes
    evaluation: bytes
    calibration: bytes


def load_example(name: str) -> Example:
    d = EXAMPLES / name
    return Example(
        name,
        TASKS[name],
        (d / "model.onnx").read_bytes(),
        (d / "evaluation.npz").read_bytes(),
        (d / "calibration.npz").read_bytes(),
    )


def target(precision: str = "auto", **kwargs: object) -> modeldeployment.CompileTarget:
    ref = modeldeployment.DatasetRef(uri="https://models.example.com/evaluation.npz", sha256="0" * 64)
    return modeldeployment.CompileTarget.model_validate(
        {"name": "x86-host", "precision": precision, "evaluation": ref, **kwargs}
    )


def compile_example(example: Example, t: modeldeployment.CompileTarget, **kwargs: object) -> jobs.CompiledModel:
    return pipeline.compile_model(
        example.model,
        t,
        example.task,
        evaluation=example.evaluation,
        calibration=example.calibration,
        model_name=example.name,
        model_version="1.0.0",
        effort=kwargs.pop("effort", FAST),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def publish(result: jobs.CompiledModel, key: ed25519.Ed25519PrivateKey) -> tuple[str, bytes]:
    """Sign the compiled members as a publisher does: ``(digest, bundle bytes)``."""
    return bundle.build(result.manifest, result.model, key, result.golden)
