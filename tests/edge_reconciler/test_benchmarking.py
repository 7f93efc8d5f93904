"""Selection measured on the devices' own hardware: real agents of two hardware classes time the compiler's
in-budget candidates off the request path, and their numbers choose the variant for their class.

The two classes really differ on this machine: one ``edgefleet-agent`` process runs as it is (``x86-64-amx``: Linux
grants it the AMX tile state, onnxruntime uses its AMX kernels), the other under a seccomp filter that refuses the
AMX permission (:mod:`edgefleet.testing.isa`), so its onnxruntime runs the AVX-512 VNNI kernels of an
``x86-64-vnni`` CPU and its agent reports that class. Everything else (cores, clock, caches) is the same machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from edgefleet.adapters import bundle, cpu
from edgefleet.api import edgedevice
from edgefleet.compiler import jobs, pipeline, selection
from edgefleet.core import devicebench
from edgefleet.testing import artifact_server, examples
from edgefleet.testing.agent_harness import Harness, eventually
from edgefleet.testing.compile_fixtures import FAST, target

pytestmark = pytest.mark.slow
ROOT = pathlib.Path(__file__).resolve().parents[2]
BUDGET = {"maxRelativeError": 0.05}


def mlp(seed: int = 0, tokens: int = 16, width: int = 256, hidden: int = 1024, layers: int = 3) -> bytes:
    """A batch x 16-token MLP stack: MatMul-heavy, where INT8 GEMM kernels (and AMX) matter."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        w1 = (rng.standard_normal((width, hidden)) / np.sqrt(width)).astype(np.float32)
        w2 = (rng.standard_normal((hidden, width)) / np.sqrt(hidden)).astype(np.float32)
        inits += [numpy_helper.from_array(w1, f"w1_{i}"), numpy_helper.from_array(w2, f"w2_{i}")]
        nodes += [
            helper.make_node("MatMul", [x, f"w1_{i}"], [f"h{i}"], name=f"up{i}"),
            helper.make_node("Relu", [f"h{i}"], [f"r{i}"], name=f"relu{i}"),
            helper.make_node("MatMul", [f"r{i}", f"w2_{i}"], [f"y{i}"], name=f"down{i}"),
        ]
        x = f"y{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", tokens, width])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", tokens, width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def compiled_for_another_class() -> jobs.CompiledModel:
    rng = np.random.default_rng(1)
    evaluation = examples.npz_bytes({"x": rng.standard_normal((64, 16, 256)).astype(np.float32)})
    calibration = examples.npz_bytes({"x": rng.standard_normal((16, 16, 256)).astype(np.float32)})
    return pipeline.compile_model(
        mlp(),
        target("auto", accuracyBudget=BUDGET),
        "regression",
        evaluation=evaluation,
        calibration=calibration,
        model_name="mlp",
        model_version="1.0.0",
        represented=False,
        target_class="x86-64-vnni",
        effort=FAST,
    )


def published_candidates(
    result: jobs.CompiledModel, key: Any, server: artifact_server.ArtifactServer
) -> list[edgedevice.BenchmarkCandidate]:
    offered = [(result.selected, result.model, result.manifest, result.golden)] + [
        (a.candidate, a.model, a.manifest, a.golden) for a in result.alternatives
    ]
    out = []
    for candidate, model, manifest, golden in offered:
        digest, data = bundle.build(manifest, model, key, golden)
        uri = server.publish(f"{candidate.name}.bundle", data)
        ref = edgedevice.ArtifactRef(uri=uri, digest=digest, size_bytes=len(data), precision=candidate.precision)
        out.append(edgedevice.BenchmarkCandidate(variant=candidate.name, artifact=ref))
    return out


async def test_one_agent_times_the_candidates_it_is_asked_about_and_forgets_withdrawn_requests(
    harness: Harness, signing_key: Any
) -> None:
    result = compiled_for_another_class()
    assert result.selected.name == "fp32" and result.alternatives  # FP32 until devices of the class report
    assert "not measured on this hardware class yet" in result.reason or "FP32 until then" in result.reason
    request = edgedevice.BenchmarkRequest(
        name="mlp-edge",
        revision="1.0.0-abc",
        candidates=published_candidates(result, signing_key, harness.artifacts),
        rounds=5,
        budget_seconds=3.0,
    )
    harness.desired_file.write_text(json.dumps({"models": [], "benchmarks": [request.to_wire()]}))
    async with harness.running():

        def done() -> dict[str, Any] | None:
            found = [b for b in harness.status().get("benchmarks", []) if b["state"] != "Running"]
            return found[0] if found else None

        reported = await eventually(done, timeout=120.0, interval=0.1)
        assert reported["state"] == "Done", reported.get("message")
        timings = {t["variant"]: t for t in reported["timings"]}
        assert set(timings) == {c.variant for c in request.candidates}
        for timing in timings.values():
            assert len(timing["roundsMs"]) >= 3 and timing["p50Ms"] > 0
        # only timings leave the device: no tensor is anywhere in the status
        assert "inputs" not in json.dumps(harness.status())
        assert not any((harness.root / "state" / "benchmarks").iterdir())  # downloads are deleted
        harness.desired_file.write_text(json.dumps({"models": []}))
        await eventually(lambda: harness.status().get("benchmarks") == [], timeout=30.0)


def _agent(root: pathlib.Path, name: str, key: Any, request: edgedevice.BenchmarkRequest, deny_amx: bool) -> Any:
    root.mkdir(parents=True)
    (root / "trust.pem").write_bytes(bundle.public_key_pem(key.public_key()))
    (root / "desired.json").write_text(json.dumps({"models": [], "benchmarks": [request.to_wire()]}))
    config = {
        "deviceName": name,
        "stateDir": str(root / "state"),
        "trustKeys": [str(root / "trust.pem")],
        "api": {"mode": "file", "desiredFile": str(root / "desired.json"), "statusFile": str(root / "status.json")},
        "server": {"port": 0},
    }
    (root / "agent.yaml").write_text(yaml.safe_dump(config))
    agent = [sys.executable, "-m", "edgefleet.edge_reconciler.main", "--config", str(root / "agent.yaml")]
    wrapper = [sys.executable, "-m", "edgefleet.testing.isa", "--deny-amx", "--"] if deny_amx else []
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    with (root / "agent.log").open("wb") as log:
        return subprocess.Popen([*wrapper, *agent], env=env, stdout=log, stderr=subprocess.STDOUT)


def _status(root: pathlib.Path) -> dict[str, Any]:
    try:
        return dict(json.loads((root / "status.json").read_text()))
    except (FileNotFoundError, ValueError):
        return {}


@pytest.mark.skipif("amx_int8" not in cpu.cpuinfo_flags() or not cpu.amx_usable(), reason="needs a CPU with usable AMX")
async def test_device_reported_measurements_choose_per_hardware_class(tmp_path: pathlib.Path) -> None:
    key = bundle.generate_key()
    result = compiled_for_another_class()
    with artifact_server.running() as server:
        request = edgedevice.BenchmarkRequest(
            name="mlp-edge",
            revision="1.0.0-abc",
            candidates=published_candidates(result, key, server),
            rounds=7,
            budget_seconds=6.0,
        )
        roots = {"amx": tmp_path / "amx", "vnni": tmp_path / "vnni"}
        processes = [
            _agent(roots["amx"], "dev-amx", key, request, deny_amx=False),
            _agent(roots["vnni"], "dev-vnni", key, request, deny_amx=True),
        ]
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                states = [[b["state"] for b in _status(r).get("benchmarks", [])] for r in roots.values()]
                if all(s and s[0] != "Running" for s in states):
                    break
                await asyncio.sleep(0.2)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
        statuses = {k: _status(r) for k, r in roots.items()}
    devices = [
        edgedevice.EdgeDevice.model_validate({"metadata": {"name": f"dev-{k}"}, "status": s})
        for k, s in statuses.items()
    ]
    # the agents detected different classes from what their process can really use
    assert {d.metadata.name: devicebench.hardware_class(d) for d in devices} == {
        "dev-amx": "x86-64-amx",
        "dev-vnni": "x86-64-vnni",
    }
    timings, failed = devicebench.results(devices, ["dev-amx", "dev-vnni"], "mlp-edge", "1.0.0-abc")
    assert failed == {} and set(timings) == {"dev-amx", "dev-vnni"}, statuses
    budget = selection.Budget(0.01, BUDGET["maxRelativeError"])
    changed = False
    for device, measured in timings.items():
        pooled = selection.pool([measured])
        timed = [dataclasses_replace(c, pooled.get(c.name)) for c in result.candidates]
        choice = selection.choose("regression", timed, budget)
        assert choice.selected is not None
        # the class's choice is the rule applied to that class's own numbers
        fastest = min(pooled, key=lambda v: selection.speed_ratio(pooled[v], pooled["fp32"])[0])
        if choice.selected.name != "fp32":
            changed = True
            _, (_, high) = selection.speed_ratio(pooled[choice.selected.name], pooled["fp32"])
            assert high <= 1.05, f"{device} chose {choice.selected.name}, slower than FP32 there"
        assert selection.speed_ratio(pooled[choice.selected.name], pooled[fastest])[0] <= 1.05
    # before the devices reported, the choice was FP32 for the class; their numbers changed it
    assert result.selected.name == "fp32" and changed, timings


def dataclasses_replace(candidate: selection.Candidate, latency: selection.Latency | None) -> selection.Candidate:
    import dataclasses

    return dataclasses.replace(candidate, latency=latency)
