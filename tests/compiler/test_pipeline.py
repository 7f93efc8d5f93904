"""The optimising compiler against real onnxruntime on the example models: acceptance criteria of the compile issue."""

from __future__ import annotations

import hashlib
import io
import pathlib
import tarfile
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle
from edgefleet.compiler import jobs, manifest, pipeline, selection
from edgefleet.core import errors
from edgefleet.testing import examples, models
from edgefleet.testing import rollout as sim
from edgefleet.testing.compile_fixtures import TASKS, compile_example, install_on_agent, load_example, publish, target

_cache: dict[tuple[str, str], jobs.CompiledModel] = {}


@pytest.fixture(params=sorted(TASKS))
def example_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def compiled(name: str, precision: str) -> jobs.CompiledModel:
    if (name, precision) not in _cache:
        _cache[(name, precision)] = compile_example(load_example(name), target(precision))
    return _cache[(name, precision)]


def fp32_of(result: jobs.CompiledModel) -> selection.Candidate:
    return next(c for c in result.candidates if c.name == "fp32")


def smoke_test(result: jobs.CompiledModel, key: ed25519.Ed25519PrivateKey) -> None:
    """What a device does with the published bundle: verify, load, run every golden sample within tolerance; and the
    bundle adds at most the stated bound to its model."""
    digest, data = publish(result, key)
    assert len(data) - len(result.model) <= manifest.MAX_OVERHEAD_BYTES
    assert result.bundle_bytes[result.selected.name] == len(data)  # the table's bundle bytes are the real ones
    opened = bundle.open_bundle(data, [key.public_key()], expected_digest=digest)
    session = ort.InferenceSession(opened.model, providers=["CPUExecutionProvider"])
    golden = bundle.golden_samples(opened)
    assert len(golden.samples) == 3 and opened.golden is not None
    names = [o.name for o in session.get_outputs()]
    for sample in golden.samples:
        for name, actual in zip(names, session.run(None, dict(sample.inputs)), strict=True):
            assert np.all(np.isfinite(actual))
            assert np.allclose(actual, sample.outputs[name], rtol=golden.rtol, atol=golden.atol)


def test_auto_meets_budget_and_is_not_slower_than_fp32(
    example_name: str, signing_key: ed25519.Ed25519PrivateKey
) -> None:
    result = compiled(example_name, "auto")
    fp32 = fp32_of(result)
    chosen = result.selected
    assert selection.verdict_of(TASKS[example_name], chosen, selection.Budget(0.01, 0.01)).passed
    assert chosen.latency is not None and fp32.latency is not None
    # never slower than FP32: its paired rounds are within the 5 % tolerance, the whole interval of their median
    assert chosen is fp32 or selection.speed_ratio(chosen.latency, fp32.latency)[1][1] <= 1.05
    # every candidate that was considered is reported, including the rejected ones
    assert {c.precision for c in result.candidates} == {"fp32", "fp16", "int8"}
    assert result.manifest["variant"]["name"] == chosen.name
    # the numbers the operator copies into status.artifacts[]
    assert result.speedup is not None and result.speedup >= 1 / 1.05
    assert 0.0 <= result.accuracy_delta <= 0.01
    smoke_test(result, signing_key)


def test_explicit_int8_is_loadable_and_at_least_3_5x_smaller(
    example_name: str, signing_key: ed25519.Ed25519PrivateKey
) -> None:
    result = compiled(example_name, "int8")
    assert result.selected.precision == "int8"
    ratio = fp32_of(result).size_bytes / result.selected.size_bytes
    assert ratio >= 3.5, result.report
    assert result.manifest["measurements"]["sizeRatio"] == pytest.approx(ratio, rel=1e-3)
    smoke_test(result, signing_key)


def test_explicit_fp16_is_1_9x_smaller_with_under_0_1_percent_loss(
    example_name: str, signing_key: ed25519.Ed25519PrivateKey
) -> None:
    result = compiled(example_name, "fp16")
    assert result.selected.precision == "fp16"
    assert fp32_of(result).size_bytes / result.selected.size_bytes >= 1.9
    fid = result.selected.fidelity
    if TASKS[example_name] == "classification":
        assert fid["top1Agreement"] >= 0.999
        assert fid["accuracyDrop"] < 0.001
    assert fid["relativeError"] < 0.001
    # float32 IO is kept, so devices feed the same tensors whatever the variant
    assert {i["dtype"] for i in result.manifest["io"]["inputs"]} == {"float32"}
    assert {o["dtype"] for o in result.manifest["io"]["outputs"]} == {"float32"}
    smoke_test(result, signing_key)


@pytest.mark.parametrize("precision", ["auto", "int8", "fp16"])
async def test_every_bundle_installs_on_a_real_agent(
    example_name: str, precision: str, signing_key: ed25519.Ed25519PrivateKey, tmp_path: pathlib.Path
) -> None:
    result = compiled(example_name, precision)
    digest, data = publish(result, signing_key)
    assert len(data) - len(result.model) <= manifest.MAX_OVERHEAD_BYTES
    status = await install_on_agent(tmp_path, signing_key, digest, data, example_name, "1.0.0", result.precision)
    assert status["state"] == "Active", status.get("message")
    assert status["activeDigest"] == digest


def test_unreachable_budget_fails_the_accuracy_gate_with_a_report() -> None:
    example = load_example("vibration-ae")
    t = target("int8", accuracyBudget={"maxAccuracyDrop": 0.0, "maxRelativeError": 0.0001})
    with pytest.raises(errors.InvalidSpecError) as info:
        compile_example(example, t)
    message = str(info.value)
    # the one form the gate's failure has, from here to the deployment's Stalled condition
    assert info.value.reason is errors.Reason.ACCURACY_GATE_FAILED
    assert "precision int8 cannot meet the accuracy budget" in message
    assert "nothing was published" in message
    # the report lists every candidate with its numbers and verdict
    for name in (
        "fp32",
        "int8-dynamic",
        "int8-qdq-s8s8-perchannel-minmax",
        "int8-qop-u8s8-perchannel-minmax",
    ):
        assert name in message
    assert "> budget 0.0001" in message
    # sensitivity-guided fallback was tried before giving up, and the message says what it tried and why it stopped
    assert "-float1 " in message
    assert "sensitivity fallback from int8-qdq-" in message and "1 in float: " in message and "stopped: " in message


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        (
            "digits-cnn",
            {
                "precision": "int8",
                "quantization": {"method": "static", "format": "QDQ", "calibrationMethod": "MinMax"},
            },
        ),
        ("vibration-ae", {"precision": "fp16"}),
    ],
)
def test_bundles_are_byte_identical_across_runs(
    name: str, spec: dict[str, Any], signing_key: ed25519.Ed25519PrivateKey
) -> None:
    """Equal inputs, equal bytes: timings differ between runs but stay out of the signed manifest.

    The spec pins one candidate per precision, so host timing noise cannot change the choice (with ``auto``
    the choice itself depends on measured speed; see the device-benchmark test below).
    """
    example = load_example(name)
    first = compile_example(example, target(**spec))
    second = compile_example(example, target(**spec))
    assert first.manifest == second.manifest and first.model == second.model
    (first_digest, first_bundle), (second_digest, second_bundle) = (
        publish(first, signing_key),
        publish(second, signing_key),
    )
    assert first_bundle == second_bundle
    assert first_digest == second_digest == bundle.sha256_digest(first_bundle)
    assert first.manifest["measurements"]["latencyP50Ms"] is None


def test_auto_is_deterministic_given_a_device_benchmark(signing_key: ed25519.Ed25519PrivateKey) -> None:
    """With device-reported latencies the whole decision is reproducible, including which variant wins."""
    example = load_example("vibration-ae")
    bench = {
        "fp32": selection.Latency(1.0, 1.2, (1.0,) * 5),
        "fp16": selection.Latency(0.7, 0.8, (0.7,) * 5),
        "int8-dynamic": selection.Latency(1.4, 1.6, (1.4,) * 5),
    }
    runs = [compile_example(example, target("auto"), device_benchmarks=bench) for _ in range(2)]
    assert runs[0].selected.name == "fp16"  # the device says FP16 is fastest there
    assert publish(runs[0], signing_key) == publish(runs[1], signing_key)


def test_tampered_bundle_fails_verification(
    signing_key: ed25519.Ed25519PrivateKey, other_key: ed25519.Ed25519PrivateKey
) -> None:
    digest, data = publish(compiled("digits-cnn", "int8"), signing_key)
    members = _members(data)
    # flip one byte of the model inside an otherwise well-formed archive
    model = bytearray(members["model.onnx"])
    model[len(model) // 2] ^= 0x01
    with pytest.raises(bundle.BundleError, match="tampered"):
        bundle.open_bundle(_rebuild({**members, "model.onnx": bytes(model)}), [signing_key.public_key()])
    # edit the manifest (e.g. loosen the golden tolerance): the signature no longer verifies
    manifest = members["manifest.json"].replace(b'"rtol":', b'"rtol":9')
    with pytest.raises(bundle.BundleError, match="does not verify"):
        bundle.open_bundle(_rebuild({**members, "manifest.json": manifest}), [signing_key.public_key()])
    # a valid bundle from an untrusted key, and a digest mismatch
    with pytest.raises(bundle.BundleError, match="does not verify"):
        bundle.open_bundle(data, [other_key.public_key()])
    with pytest.raises(bundle.BundleError, match="digest mismatch"):
        bundle.open_bundle(data, [signing_key.public_key()], expected_digest="sha256:" + "0" * 64)
    assert bundle.open_bundle(data, [signing_key.public_key()], expected_digest=digest).manifest["variant"]


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        out = {}
        for info in tar:
            f = tar.extractfile(info)
            assert f is not None
            out[info.name] = f.read()
        return out


def _rebuild(members: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_manifest_carries_the_agreed_keys() -> None:
    result = compiled("vibration-ae", "auto")
    m = result.manifest
    assert m["schemaVersion"] == 2
    assert "files" not in m  # unsigned: the publisher pins the model's digest when it signs
    assert m["model"] == {
        "name": "vibration-ae",
        "version": "1.0.0",
        "task": "anomaly-score",
        "sourceSha256": hashlib.sha256(load_example("vibration-ae").model).hexdigest(),
    }
    assert m["target"]["name"] == "x86-host"
    assert m["variant"]["precision"] in ("fp32", "fp16", "int8")
    assert m["io"]["inputs"] == [{"name": "spectrum", "dtype": "float32", "shape": ["batch", 256]}]
    assert [o["name"] for o in m["io"]["outputs"]] == ["reconstruction", "score"]
    assert m["measurements"]["sizeBytes"] == len(result.model)
    assert m["compileOptions"]["toolchain"]["onnxruntime"] == ort.__version__
    assert m["golden"]["rtol"] > 0 and m["golden"]["atol"] > 0


def test_pruning_packs_sparse_weights_and_is_gated(signing_key: ed25519.Ed25519PrivateKey) -> None:
    example = load_example("digits-cnn")
    loose = compile_example(
        example,
        target("fp32", pruning={"sparsity": 0.8}, optimizeFor="size", accuracyBudget={"maxAccuracyDrop": 1.0}),
    )
    assert loose.selected.name == "fp32-pruned"
    assert loose.selected.options["pruning"]["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert loose.selected.options["pruning"]["sparseTensors"] >= 1
    # sparsity-aware packaging: the pruned FP32 file is much smaller, and still loads and runs on a device
    assert fp32_of(loose).size_bytes / loose.selected.size_bytes > 2.0
    smoke_test(loose, signing_key)
    # without fine-tuning, 80 % pruning breaks the default budget: the gate rejects it
    strict = compile_example(example, target("fp32", pruning={"sparsity": 0.8}))
    assert strict.selected.name == "fp32"
    verdicts = {c["name"]: c["verdict"] for c in strict.manifest["measurements"]["candidates"]}
    assert verdicts["fp32-pruned"].startswith("accuracy drop")
    assert "> budget 0.0100" in verdicts["fp32-pruned"]


def test_the_result_is_unsigned_and_each_publisher_signs_it(
    signing_key: ed25519.Ed25519PrivateKey, other_key: ed25519.Ed25519PrivateKey
) -> None:
    result = compiled("digits-cnn", "int8")
    ours, theirs = publish(result, signing_key), publish(result, other_key)
    assert ours[0] != theirs[0]  # the key is part of the bundle, so of its digest
    for (digest, data), key in ((ours, signing_key), (theirs, other_key)):
        opened = bundle.open_bundle(data, [key.public_key()], expected_digest=digest)
        assert opened.model == result.model
        assert {k: v for k, v in opened.manifest.items() if k != "files"} == result.manifest


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"pixels": np.zeros((2, 1, 8, 8), np.float32)}, "lacks an array for model input 'image'"),
        ({"image": np.zeros((2, 64), np.float32)}, "has rank 2, the model input wants rank 4"),
        ({"image": np.zeros((2, 1, 8, 9), np.float32)}, r"wants \['batch', 1, 8, 8\] \(axis 3\)"),
    ],
)
def test_evaluation_set_must_fit_the_model(arrays: dict[str, np.ndarray], message: str) -> None:
    example = load_example("digits-cnn")
    bad = type(example)(example.name, example.task, example.model, examples.npz_bytes(arrays), example.calibration)
    with pytest.raises(errors.InvalidSpecError, match=message) as info:
        compile_example(bad, target("fp32"))
    assert "compile target 'x86-host'" in str(info.value)
    assert info.value.reason == "InvalidInput"


def test_garbage_model_is_invalid_input() -> None:
    example = load_example("digits-cnn")
    bad = type(example)(example.name, example.task, b"\x08\x07garbage", example.evaluation, example.calibration)
    with pytest.raises(errors.InvalidSpecError, match="ONNX") as info:
        compile_example(bad, target("fp32"))
    assert info.value.reason is errors.Reason.INVALID_INPUT


def test_static_int8_without_calibration_is_refused() -> None:
    example = load_example("digits-cnn")
    with pytest.raises(errors.InvalidSpecError, match="needs a calibration set"):
        pipeline.compile_model(
            example.model,
            target("int8", quantization={"method": "static"}),
            example.task,
            evaluation=example.evaluation,
            calibration=None,
            model_name="d",
            model_version="1.0.0",
        )


def test_compile_request_fetches_its_inputs_and_compiles_for_the_named_target(tmp_path: pathlib.Path) -> None:
    data, evaluation = models.linear(3), models.evaluation_set(16)
    (tmp_path / "model.onnx").write_bytes(data)
    (tmp_path / "eval.npz").write_bytes(evaluation)
    with models.served(tmp_path) as url:
        wire = sim.spec().model_dump(by_alias=True, mode="json", exclude_none=True)
        wire["model"].update(uri=f"{url}/model.onnx", sha256=hashlib.sha256(data).hexdigest(), task="regression")
        for t in wire["compile"]["targets"]:
            t.update(
                precision="fp32",
                evaluation={"uri": f"{url}/eval.npz", "sha256": hashlib.sha256(evaluation).hexdigest()},
            )
        result = pipeline.compile_request(jobs.CompileRequest(wire, "x86"))
    assert result.manifest["target"]["name"] == "x86"
    assert result.manifest["model"]["sourceSha256"] == hashlib.sha256(data).hexdigest()
    assert result.precision == "fp32" and result.variant == "fp32"
    assert result.speedup == 1.0 and result.accuracy_delta < 1e-6
