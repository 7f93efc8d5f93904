"""The compile stage for real: a spawned worker process fetches a real ONNX model over HTTP, a compiler builds the
unsigned bundle members with onnxruntime, the operator signs the bundle once and publishes it to the local store."""

from __future__ import annotations

import concurrent.futures
import hashlib
import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle, store
from edgefleet.api import modeldeployment
from edgefleet.compiler import jobs
from edgefleet.core import errors
from edgefleet.operator import compilation
from edgefleet.testing import models
from edgefleet.testing import rollout as sim

PASSTHROUGH = jobs.PACKAGER


@pytest.fixture(scope="module")
def pool() -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as executor:
        yield executor


def spec_for(
    url: str, data: bytes, evaluation: bytes | None = None, **target: object
) -> modeldeployment.ModelDeploymentSpec:
    wire = sim.spec().model_dump(by_alias=True, mode="json", exclude_none=True)
    wire["model"].update(uri=f"{url}/model.onnx", sha256=hashlib.sha256(data).hexdigest(), task="regression")
    for t in wire["compile"]["targets"]:
        t.update(target)
        if evaluation is not None:
            t["evaluation"] = {"uri": f"{url}/eval.npz", "sha256": hashlib.sha256(evaluation).hexdigest()}
    return modeldeployment.ModelDeploymentSpec.model_validate(wire)


async def test_compile_signs_and_publishes_a_verifiable_bundle_per_target(
    pool: concurrent.futures.ProcessPoolExecutor, tmp_path: Path
) -> None:
    data = models.adder(2.5)
    (tmp_path / "model.onnx").write_bytes(data)
    key = bundle.generate_key()
    local = store.LocalStore(tmp_path / "store", "http://store:8080")
    stage = compilation.CompileStage(pool, local, key, PASSTHROUGH)
    with models.served(tmp_path) as url:
        spec = spec_for(url, data)
        published = await stage.compile(spec)
    assert [a.target for a in published.artifacts] == ["arm64", "x86"]
    assert published.template.revision.startswith("1.0.0-")
    for artifact in published.artifacts:
        opened = bundle.open_bundle(await local.get(artifact.digest), [key.public_key()], artifact.digest)
        assert opened.model == data
        manifest = opened.manifest
        assert manifest["model"]["sourceSha256"] == spec.model.sha256
        assert manifest["io"]["inputs"] == [{"name": "x", "dtype": "tensor(float)", "shape": ["batch", 4]}]
        golden = bundle.golden_samples(opened)
        assert len(golden.samples) == 2 and opened.golden is not None  # the golden.bin member
        for sample in golden.samples:
            x, y = sample.inputs["x"], sample.outputs["y"]
            assert np.allclose(y, x + 2.5, rtol=golden.rtol, atol=golden.atol)
        assert artifact.uri == local.uri(artifact.digest)


async def test_a_wrong_source_digest_is_an_invalid_spec(
    pool: concurrent.futures.ProcessPoolExecutor, tmp_path: Path
) -> None:
    data = models.adder(1.0)
    (tmp_path / "model.onnx").write_bytes(data + b"tampered")
    stage = compilation.CompileStage(
        pool, store.LocalStore(tmp_path / "s", "http://s"), bundle.generate_key(), PASSTHROUGH
    )
    with models.served(tmp_path) as url, pytest.raises(errors.InvalidSpecError, match="do not have the sha256"):
        await stage.compile(spec_for(url, data))


async def test_a_failed_accuracy_gate_is_reported_with_its_numbers(
    pool: concurrent.futures.ProcessPoolExecutor, tmp_path: Path
) -> None:
    stage = compilation.CompileStage(
        pool,
        store.LocalStore(tmp_path, "http://s"),
        bundle.generate_key(),
        "edgefleet.testing.compilers:gate_fails",
    )
    with pytest.raises(errors.InvalidSpecError, match=r"int8 drop 0\.034") as caught:
        await stage.compile(sim.spec())
    assert caught.value.reason == "AccuracyGateFailed"


async def test_a_compile_over_its_memory_budget_is_stopped_with_a_clear_reason(
    pool: concurrent.futures.ProcessPoolExecutor, tmp_path: Path
) -> None:
    """The worker runs the compile in a supervised child: over the budget it is stopped, not OOM-killed, and the
    error names the budget, the step and the operator setting (the deployment's Stalled reason)."""
    stage = compilation.CompileStage(
        pool,
        store.LocalStore(tmp_path, "http://s"),
        bundle.generate_key(),
        "edgefleet.testing.compilers:memory_hog",
        memory_budget_bytes=384 * 1024**2,
    )
    with pytest.raises(errors.InvalidSpecError) as caught:
        await stage.compile(sim.spec())
    assert caught.value.reason is errors.Reason.COMPILE_MEMORY_EXCEEDED
    assert caught.value.reason.is_compile_failure  # recorded in status.compileFailure, Stalled, not retried
    message = str(caught.value)
    assert "exceeded its memory budget of 384.00 MiB" in message and "while calibrating step" in message
    assert "EDGEFLEET_COMPILE_MEMORY_BYTES" in message
    # the pool survived: the next compile in the same worker works
    data = models.adder(1.0)
    (tmp_path / "model.onnx").write_bytes(data)
    ok = compilation.CompileStage(
        pool, store.LocalStore(tmp_path / "s2", "http://s"), bundle.generate_key(), PASSTHROUGH
    )
    with models.served(tmp_path) as url:
        assert len((await ok.compile(spec_for(url, data))).artifacts) == 2


async def test_the_optimising_compiler_runs_in_the_worker_and_its_bundle_verifies(
    pool: concurrent.futures.ProcessPoolExecutor, tmp_path: Path
) -> None:
    data, evaluation = models.linear(3), models.evaluation_set(16)
    (tmp_path / "model.onnx").write_bytes(data)
    (tmp_path / "eval.npz").write_bytes(evaluation)
    key = bundle.generate_key()
    local = store.LocalStore(tmp_path / "store", "http://store:8080")
    stage = compilation.CompileStage(pool, local, key)  # the default: the optimising compiler
    with models.served(tmp_path) as url:
        published = await stage.compile(spec_for(url, data, evaluation))
    for artifact in published.artifacts:
        opened = bundle.open_bundle(await local.get(artifact.digest), [key.public_key()], artifact.digest)
        assert opened.manifest["variant"]["precision"] == artifact.precision
        assert opened.manifest["golden"]["samples"] and artifact.variant is not None


async def test_the_optimising_compilers_unreachable_budget_is_the_accuracy_gate(
    pool: concurrent.futures.ProcessPoolExecutor, tmp_path: Path
) -> None:
    data, evaluation = models.linear(3), models.evaluation_set(16)
    (tmp_path / "model.onnx").write_bytes(data)
    (tmp_path / "eval.npz").write_bytes(evaluation)
    stage = compilation.CompileStage(pool, store.LocalStore(tmp_path / "s", "http://s"), bundle.generate_key())
    with models.served(tmp_path) as url, pytest.raises(errors.InvalidSpecError) as caught:
        await stage.compile(spec_for(url, data, evaluation, precision="int8", accuracyBudget={"maxRelativeError": 0.0}))
    assert caught.value.reason == "AccuracyGateFailed"
    assert "int8" in str(caught.value) and "relative error" in str(caught.value)
    assert "nothing was published" in str(caught.value)


async def test_published_bundles_are_content_addressed(
    pool: concurrent.futures.ProcessPoolExecutor, tmp_path: Path
) -> None:
    """Equal inputs and key publish byte-identical bundles: the digest names the content, whoever compiled it."""
    data, evaluation = models.linear(3), models.evaluation_set(16)
    (tmp_path / "model.onnx").write_bytes(data)
    (tmp_path / "eval.npz").write_bytes(evaluation)
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    stores = [store.LocalStore(tmp_path / name, "http://store:8080") for name in ("a", "b")]
    with models.served(tmp_path) as url:
        spec = spec_for(url, data, evaluation, precision="fp32")
        first, second = [await compilation.CompileStage(pool, s, key).compile(spec) for s in stores]
    assert [a.digest for a in first.artifacts] == [a.digest for a in second.artifacts]
    assert first.template == second.template
    for artifact in first.artifacts:
        published = await stores[0].get(artifact.digest)
        assert published == await stores[1].get(artifact.digest)
        assert bundle.sha256_digest(published) == artifact.digest
