"""The operator's side of device benchmarks: which devices it asks, what it writes, how it waits and chooses.

The Kubernetes API is the in-repo fake here (the agent side runs on real agents in
``tests/edge_reconciler/test_benchmarking.py``); a responder plays the devices, writing the timings a device of
each class would report.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgefleet.adapters import bundle, fleet, kube, store
from edgefleet.api import edgedevice
from edgefleet.compiler import pipeline
from edgefleet.core import devicebench
from edgefleet.operator import compilation
from edgefleet.operator import devicebench as operator_bench
from edgefleet.testing import examples
from edgefleet.testing import rollout as sim
from edgefleet.testing.compile_fixtures import FAST, target
from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.fakekube import FakeKube

NS = "plant"
Timing = tuple[float, float, tuple[float, ...]]


def device(name: str, cls: str | None, hw_label: str = "x86") -> dict[str, Any]:
    status: dict[str, Any] = {"capabilities": {"hardwareClass": cls}} if cls else {}
    labels = {"app": "weld", "edgefleet.io/hardware-class": hw_label}
    return {"apiVersion": "edgefleet.io/v1alpha1", "metadata": {"name": name, "labels": labels}, "status": status}


def measured_result(request: edgedevice.BenchmarkRequest, measured: Mapping[str, Timing]) -> edgedevice.BenchmarkResult:
    """What a device that timed every candidate of ``request`` as ``measured`` reports."""
    return edgedevice.BenchmarkResult(
        name=request.name,
        revision=request.revision,
        state="Done",
        timings=[
            edgedevice.BenchmarkTiming(
                variant=c.variant,
                digest=c.artifact.digest,
                p50_ms=measured[c.variant][0],
                p95_ms=measured[c.variant][1],
                rounds_ms=list(measured[c.variant][2]),
            )
            for c in request.candidates
        ],
    )


async def respond(api: FakeKube, timings_for: Callable[[str], Mapping[str, Timing]], stop: asyncio.Event) -> None:
    """Play the devices: answer every benchmark request in a device's spec with that device's timings."""
    while not stop.is_set():
        for raw in (await api.list(kube.EDGEDEVICES, NS)).items:
            current = edgedevice.EdgeDevice.model_validate(raw)
            done = {(b.name, b.revision) for b in (current.status.benchmarks if current.status else [])}
            for request in current.spec.benchmarks:
                if (request.name, request.revision) in done:
                    continue
                result = measured_result(request, timings_for(current.metadata.name))
                raw["status"] = {**(raw.get("status") or {}), "benchmarks": [result.to_wire()]}
                api.put(kube.EDGEDEVICES, NS, raw)
        await asyncio.sleep(0.01)


def spec_one_target() -> Any:
    wire = sim.spec().to_wire()
    wire["compile"]["targets"] = [wire["compile"]["targets"][1]]  # x86 only: every device
    wire["compile"]["targets"][0]["accuracyBudget"] = {"maxRelativeError": 0.05}
    wire["model"]["task"] = "regression"
    return type(sim.spec()).model_validate(wire)


def test_devices_are_picked_per_class_in_canary_order_and_only_reporting_ones() -> None:
    devices = [
        edgedevice.EdgeDevice.model_validate(d)
        for d in (device("a", "x86-64-avx2"), device("b", "x86-64-avx2"), device("c", None), device("d", "arm64"))
    ]
    spec = spec_one_target()
    targeted = devicebench.targeted(devices, spec, "x86")
    assert [d.metadata.name for d in targeted] == ["a", "b", "c", "d"]
    assert devicebench.classes(targeted) == ("arm64", "x86-64-avx2")
    picked = devicebench.pick(targeted, "weld/r1", per_class=1)
    assert len(picked) == 2 and "c" not in picked and "d" in picked  # one per reported class, none without one
    assert devicebench.pick(targeted, "weld/r1", per_class=1) == picked  # deterministic


async def test_the_stage_chooses_from_what_devices_of_the_class_measured(tmp_path: Path) -> None:
    """Host timings do not stand for x86-64-avx2: FP32 and the alternatives are published, two devices time them,
    and the variant their numbers favour ships, with selectedBy saying so; the requests are withdrawn afterwards."""
    api = FakeKube()
    for name in ("a", "b", "c"):
        api.put(kube.EDGEDEVICES, NS, device(name, "x86-64-avx2"))
    rng = np.random.default_rng(0)
    result = pipeline.compile_model(
        examples_mlp(),
        target("auto", accuracyBudget={"maxRelativeError": 0.05}),
        "regression",
        evaluation=examples.npz_bytes({"x": rng.standard_normal((32, 64)).astype(np.float32)}),
        calibration=examples.npz_bytes({"x": rng.standard_normal((16, 64)).astype(np.float32)}),
        model_name="weld",
        model_version="1.0.0",
        represented=False,
        target_class="x86-64-avx2",
        effort=FAST,
    )
    names = [result.selected.name] + [a.candidate.name for a in result.alternatives]
    assert names[0] == "fp32" and len(names) >= 2
    # on these devices the smallest alternative is 40 % faster than FP32, the others slower
    fastest = min(names[1:], key=lambda n: next(c.size_bytes for c in result.candidates if c.name == n))

    def timings_for(_device: str) -> Mapping[str, Timing]:
        jitter = (1.0, 1.02, 0.99, 1.01, 1.0)
        ms = {n: (0.6 if n == fastest else 1.0 if n == "fp32" else 1.3) for n in names}
        return {n: (v, v * 1.2, tuple(v * j for j in jitter)) for n, v in ms.items()}

    devices = fleet.Devices(api)
    benchmarks = operator_bench.DeviceBenchmarks(api, devices, per_class=2, timeout_seconds=30, poll_seconds=0.02)
    stage = compilation.CompileStage(
        _no_pool(), store.LocalStore(tmp_path, "http://store:8080"), bundle.generate_key(), benchmarks=benchmarks
    )
    spec = spec_one_target()
    stop = asyncio.Event()
    responder = asyncio.create_task(respond(api, timings_for, stop))
    try:
        ref, artifact = await stage._choose_on_devices(spec, spec.compile.targets[0], result, "r1", (NS, "weld"))
    finally:
        stop.set()
        await responder
    assert artifact.variant == fastest and ref.precision != "fp32", artifact.selected_by
    assert artifact.selected_by is not None and "2 of 2 devices of class x86-64-avx2" in artifact.selected_by
    assert artifact.speedup is not None and 1.6 < artifact.speedup < 1.8
    for raw in (await api.list(kube.EDGEDEVICES, NS)).items:
        assert (raw.get("spec") or {}).get("benchmarks", []) == []  # withdrawn


async def test_without_answers_in_time_the_stage_keeps_fp32(tmp_path: Path) -> None:
    api = FakeKube()
    api.put(kube.EDGEDEVICES, NS, device("a", "x86-64-avx2"))
    rng = np.random.default_rng(0)
    result = pipeline.compile_model(
        examples_mlp(),
        target("auto", accuracyBudget={"maxRelativeError": 0.05}),
        "regression",
        evaluation=examples.npz_bytes({"x": rng.standard_normal((32, 64)).astype(np.float32)}),
        model_name="weld",
        model_version="1.0.0",
        represented=False,
        target_class="x86-64-avx2",
        effort=dataclasses.replace(FAST, golden_samples=1),
    )
    benchmarks = operator_bench.DeviceBenchmarks(api, fleet.Devices(api), timeout_seconds=0.2, poll_seconds=0.02)
    stage = compilation.CompileStage(
        _no_pool(), store.LocalStore(tmp_path, "http://store:8080"), bundle.generate_key(), benchmarks=benchmarks
    )
    spec = spec_one_target()
    _, artifact = await stage._choose_on_devices(spec, spec.compile.targets[0], result, "r1", (NS, "weld"))
    assert artifact.variant == "fp32" and artifact.selected_by is not None
    assert "no answer: a" in artifact.selected_by


def examples_mlp() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w1 = numpy_helper.from_array((rng.standard_normal((64, 256)) / 8).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((256, 8)) / 16).astype(np.float32), "w2")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"], name="up"),
            helper.make_node("Relu", ["h"], ["r"], name="relu"),
            helper.make_node("MatMul", ["r", "w2"], ["y"], name="down"),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        [w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _no_pool() -> Any:
    import concurrent.futures

    return concurrent.futures.ThreadPoolExecutor(1)


@pytest.mark.controlplane
async def test_on_the_real_api_server_two_classes_measure_and_each_gets_its_own_choice(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """The same exchange through a real kube-apiserver (CRDs, ``spec.benchmarks`` patched by the operator's code,
    ``status.benchmarks`` written through the status subresource), for two fleets whose devices report different
    hardware classes and measure differently: the class whose devices time INT8 faster gets INT8, the class whose
    devices time it slower gets the smallest float variant at FP32's speed. Neither is the compile host's class."""
    namespaces = {"x86-64-vnni": namespace, "x86-64-avx2": f"{namespace}-b"[:63]}
    control_plane.kubectl("create", "namespace", namespaces["x86-64-avx2"])
    client = kube.connect(kube.from_kubeconfig(control_plane.kubeconfig))
    chosen, results = {}, {}
    try:
        for cls, ns in namespaces.items():
            for name in ("dev-1", "dev-2", "dev-3"):
                body = device(name, cls)
                status = body.pop("status")
                body["kind"], body["spec"] = "EdgeDevice", {}
                await client.create(kube.EDGEDEVICES, ns, body)
                await client.merge_patch(kube.EDGEDEVICES, ns, name, {"status": status}, subresource="status")
        for cls, ns in namespaces.items():
            result = results[cls] = _compiled_elsewhere(cls)
            names = [result.selected.name] + [a.candidate.name for a in result.alternatives]
            assert names[0] == "fp32" and any(n.startswith("int8") for n in names), names

            def timings_for(_device: str, cls: str = cls, names: list[str] = names) -> Mapping[str, Timing]:
                # vnni devices: INT8 in half FP32's time; avx2 devices: INT8 1.4x slower; FP16 as fast as FP32
                jitter = (1.0, 1.02, 0.99, 1.01, 1.0)
                int8 = 0.5 if cls == "x86-64-vnni" else 1.4
                ms = {n: int8 if n.startswith("int8") else 1.0 for n in names}
                return {n: (v, v * 1.2, tuple(v * j for j in jitter)) for n, v in ms.items()}

            benchmarks = operator_bench.DeviceBenchmarks(
                client, fleet.Devices(client), per_class=2, timeout_seconds=60, poll_seconds=0.1
            )
            stage = compilation.CompileStage(
                _no_pool(),
                store.LocalStore(tmp_path / cls, "http://store:8080"),
                bundle.generate_key(),
                benchmarks=benchmarks,
            )
            spec = spec_one_target()
            stop = asyncio.Event()
            responder = asyncio.create_task(_respond_real(client, ns, timings_for, stop))
            try:
                assert await benchmarks.classes(ns, spec) == {"x86": (cls,)}
                _, artifact = await stage._choose_on_devices(spec, spec.compile.targets[0], result, "r1", (ns, "weld"))
            finally:
                stop.set()
                await responder
            assert artifact.selected_by is not None and f"2 of 2 devices of class {cls}" in artifact.selected_by
            chosen[cls] = artifact.variant
            for raw in (await client.list(kube.EDGEDEVICES, ns)).items:
                assert (raw.get("spec") or {}).get("benchmarks", []) == []  # withdrawn
    finally:
        await client.close()
    assert chosen["x86-64-vnni"].startswith("int8"), chosen
    avx2 = results["x86-64-avx2"]
    floats = [
        c
        for c in avx2.candidates
        if c.precision != "int8" and c.name in {a.candidate.name for a in avx2.alternatives} | {"fp32"}
    ]
    # on avx2 INT8 is slower: the float group (FP16 as fast as FP32) is left, and its smaller artifact ships
    assert chosen["x86-64-avx2"] == min(floats, key=lambda c: c.size_bytes).name, (chosen, floats)
    assert all(r.selected.name == "fp32" for r in results.values())  # before the devices' numbers: the safe choice


def _compiled_elsewhere(cls: str) -> Any:
    rng = np.random.default_rng(0)
    return pipeline.compile_model(
        examples_mlp(),
        target("auto", accuracyBudget={"maxRelativeError": 0.05}),
        "regression",
        evaluation=examples.npz_bytes({"x": rng.standard_normal((32, 64)).astype(np.float32)}),
        calibration=examples.npz_bytes({"x": rng.standard_normal((16, 64)).astype(np.float32)}),
        model_name="weld",
        model_version="1.0.0",
        represented=False,
        target_class=cls,
        effort=FAST,
    )


async def _respond_real(
    client: kube.Client, namespace: str, timings_for: Callable[[str], Mapping[str, Timing]], stop: asyncio.Event
) -> None:
    """Play the devices on the real API server: answer each request in a device's spec through the status
    subresource, as an agent's status report does."""
    while not stop.is_set():
        for raw in (await client.list(kube.EDGEDEVICES, namespace)).items:
            current = edgedevice.EdgeDevice.model_validate(raw)
            done = {(b.name, b.revision) for b in (current.status.benchmarks if current.status else [])}
            fresh = [r for r in current.spec.benchmarks if (r.name, r.revision) not in done]
            if not fresh:
                continue
            measured = timings_for(current.metadata.name)
            results = [measured_result(r, measured).to_wire() for r in fresh]
            patch = {"status": {"benchmarks": results}}
            await client.merge_patch(kube.EDGEDEVICES, namespace, current.metadata.name, patch, subresource="status")
        await asyncio.sleep(0.05)
