"""Edge agent benchmark: serving latency against a raw onnxruntime call, rollback time, and agent memory.

    PYTHONPATH=src python benchmarks/agent_bench.py [--requests 3000] [--rollbacks 5]

1. Latency. The real ``edgefleet-agent`` runs as a subprocess (file-driven spec, bundle downloaded from a local
   HTTP server, 127.0.0.1). A keep-alive client sends sequential predictions of one ``[1, 64]`` float32 row to a
   small MLP (64-128-10) as JSON and as a binary tensor body; the baseline is ``session.run`` on the same model in
   this process, which is what an application embedding onnxruntime itself would pay.
2. Rollback. An in-process agent serves 1.0.0, switches to a version that emits NaN (or is too slow) and is rolled
   back. "agent" is the time from the failing sample being recorded (the condition becoming detectable) to the
   previous session serving; "client" is from the client receiving the bad answer to the first answer of 1.0.0.
   The reference is the 30 s the issue quotes for rollbacks driven from outside the device.
3. Memory. Resident set size of the agent process serving the model, against a bare Python process that imports
   onnxruntime and holds the same session.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import onnx
import onnxruntime as ort
import yaml
from onnx import TensorProto, helper, numpy_helper

from edgefleet.adapters import bundle
from edgefleet.api.modeldeployment import HealthSpec
from edgefleet.testing import agent_harness as test_harness
from edgefleet.testing import onnx_models
from edgefleet.testing.artifact_server import ArtifactServer

ROOT = Path(__file__).resolve().parents[1]


def mlp_bytes(seed: int = 0) -> bytes:
    """A 64-128-10 MLP with ReLU, fp32 (about 40 KB)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(scale=0.1, size=(64, 128)).astype(np.float32)
    w2 = rng.normal(scale=0.1, size=(128, 10)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["a"]),
            helper.make_node("MatMul", ["a", "w2"], ["y"]),
        ],
        "bench-mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def mlp_bundle(key: Any) -> tuple[str, bytes]:
    model = mlp_bytes()
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(2, 64)).astype(np.float32)
    (y,) = session.run(["y"], {"x": x})
    manifest = {
        "schemaVersion": 1,
        "model": {"name": "mlp", "version": "1.0.0", "task": "other", "sourceSha256": "0" * 64},
        "target": {"name": "bench"},
        "variant": {"name": "fp32", "precision": "fp32", "reason": "benchmark"},
        "compileOptions": {},
        "io": {
            "inputs": [{"name": "x", "dtype": "float32", "shape": ["N", 64]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": ["N", 10]}],
        },
        "golden": {
            "samples": [{"inputs": {"x": bundle.encode_array(x)}, "outputs": {"y": bundle.encode_array(y)}}],
            "rtol": 1e-4,
            "atol": 1e-5,
        },
        "measurements": {},
    }
    return bundle.build(manifest, model, key)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def raw_latencies(model: bytes, n: int) -> list[float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).normal(size=(1, 64)).astype(np.float32)
    for _ in range(200):
        session.run(["y"], {"x": x})
    out = []
    for _ in range(n):
        start = time.perf_counter()
        session.run(["y"], {"x": x})
        out.append((time.perf_counter() - start) * 1000)
    return out


FLOOR_SERVER = """
import sys
from aiohttp import web
async def ok(request):
    await request.read()
    return web.Response(body=b"{}", content_type="application/json")
app = web.Application()
app.router.add_post("/v1/models/mlp:predict", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


async def floor_latencies(n: int) -> list[float]:
    """Round trips to an aiohttp handler that does nothing: the client + loopback + HTTP parsing floor."""
    with socket_port() as port:
        pass
    proc = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, str(port)])
    try:
        for _ in range(100):
            try:
                async with aiohttp.ClientSession() as http, http.post(f"http://127.0.0.1:{port}/v1/models/mlp:predict"):
                    break
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
        return (await server_latencies(port, n, labels=("floor",)))["floor"]
    finally:
        proc.terminate()
        proc.wait(10)


async def server_latencies(
    port: int, n: int, labels: tuple[str, ...] = ("server, JSON", "server, binary")
) -> dict[str, list[float]]:
    url = f"http://127.0.0.1:{port}/v1/models/mlp:predict"
    x = np.random.default_rng(2).normal(size=(1, 64)).astype(np.float32)
    body_json = json.dumps({"inputs": {"x": x.tolist()}}).encode()
    headers_json = {"Content-Type": "application/json"}
    headers_bin = {"Content-Type": "application/octet-stream", "X-Edgefleet-Shape": "1,64"}
    results: dict[str, list[float]] = {label: [] for label in labels}
    cases = [("server, JSON", body_json, headers_json), ("server, binary", x.tobytes(), headers_bin)]
    if labels == ("floor",):
        cases = [("floor", body_json, headers_json)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as http:
        for label, data, headers in cases:
            for i in range(n + 200):
                start = time.perf_counter()
                async with http.post(url, data=data, headers=headers) as resp:
                    await resp.read()
                    assert resp.status == 200, resp.status
                if i >= 200:
                    results[label].append((time.perf_counter() - start) * 1000)
    return results


def baseline_rss(model_path: Path) -> int:
    code = (
        "import sys, time, numpy as np, onnxruntime as ort\n"
        "o = ort.SessionOptions(); o.intra_op_num_threads = 1\n"
        f"s = ort.InferenceSession({str(model_path)!r}, o, providers=['CPUExecutionProvider'])\n"
        "s.run(None, {'x': np.zeros((1, 64), np.float32)})\n"
        "print('ready', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()
    time.sleep(0.5)
    rss = rss_kib(proc.pid)
    proc.kill()
    proc.wait()
    return rss


async def latency_and_memory(n: int) -> tuple[list[list[str]], list[list[str]]]:
    key = bundle.generate_key()
    digest, data = mlp_bundle(key)
    with tempfile.TemporaryDirectory(prefix="edgefleet-bench-") as tmp:
        root = Path(tmp)
        server = ArtifactServer().start()
        try:
            url = server.publish("mlp.bundle", data)
            (root / "trust.pem").write_bytes(bundle.public_key_pem(key.public_key()))
            (root / "model.onnx").write_bytes(mlp_bytes())
            desired = {
                "models": [
                    {
                        "name": "mlp",
                        "deployment": "mlp",
                        "version": "1.0.0",
                        "revision": "r1",
                        "artifact": {"uri": url, "digest": digest, "sizeBytes": len(data), "precision": "fp32"},
                    }
                ]
            }
            (root / "desired.json").write_text(json.dumps(desired))
            with socket_port() as port:
                pass
            config = {
                "deviceName": "bench",
                "stateDir": str(root / "state"),
                "trustKeys": [str(root / "trust.pem")],
                "api": {"mode": "file", "desiredFile": str(root / "desired.json"), "statusFile": str(root / "s.json")},
                "server": {"port": port},
            }
            (root / "agent.yaml").write_text(yaml.safe_dump(config))
            env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
            proc = subprocess.Popen(
                [sys.executable, "-m", "edgefleet.edge_reconciler.main", "--config", str(root / "agent.yaml")],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    status = json.loads((root / "s.json").read_text()) if (root / "s.json").exists() else {}
                    if any(m.get("state") == "Active" for m in status.get("models", [])):
                        break
                    await asyncio.sleep(0.05)
                idle_rss = rss_kib(proc.pid)
                raw = raw_latencies(mlp_bytes(), n)
                served = await server_latencies(port, n)
                floor = await floor_latencies(n)
                loaded_rss = rss_kib(proc.pid)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
            base_rss = baseline_rss(root / "model.onnx")
        finally:
            server.stop()
    rows = [["raw onnxruntime session.run", *_fmt(raw), "-", "-"]]
    rows.append(["empty aiohttp handler (HTTP floor)", *_fmt(floor), "-", "-"])
    for label, values in served.items():
        over_raw = pct(values, 0.5) - pct(raw, 0.5)
        over_floor = pct(values, 0.5) - pct(floor, 0.5) - pct(raw, 0.5)
        rows.append([label + " (HTTP round trip)", *_fmt(values), f"+{over_raw:.3f}", f"+{over_floor:.3f}"])
    mem = [
        ["python + onnxruntime + session (baseline)", f"{base_rss / 1024:.1f}"],
        ["edgefleet-agent, model loaded, idle", f"{idle_rss / 1024:.1f}"],
        ["edgefleet-agent, after the latency run", f"{loaded_rss / 1024:.1f}"],
    ]
    return rows, mem


class socket_port:
    """A free TCP port on 127.0.0.1."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


def _fmt(values: list[float]) -> list[str]:
    return [f"{pct(values, q):.3f}" for q in (0.5, 0.95, 0.99)]


async def rollbacks(count: int) -> list[list[str]]:
    key = bundle.generate_key()
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="edgefleet-bench-") as tmp:
        server = ArtifactServer().start()
        try:
            h = test_harness.Harness(Path(tmp), key, server)
            good, good_url = h.publish("demo", "1.0.0")
            # The shipped defaults for evaluation (healthTickSeconds 0.05), fast retries so the run is short.
            settings = dataclasses.replace(test_harness.FAST, health_tick_seconds=0.05)
            async with h.running(settings):
                h.want(test_harness.desired(good, good_url))
                await test_harness.eventually(lambda: h.served_version() == "1.0.0")
                for variant in ("nan", "slow"):
                    agent_s: list[float] = []
                    client_s: list[float] = []
                    for i in range(count):
                        version = f"2.{'0' if variant == 'nan' else '1'}.{i}"
                        bad, bad_url = h.publish("demo", version, variant)
                        health = HealthSpec(latency_p95_ms=2.0, min_samples=10, window_seconds=30)
                        h.want(test_harness.desired(bad, bad_url, health=health))
                        await test_harness.eventually(lambda v=version: h.served_version() == v)
                        x = np.array([[-1.0, 0.5, 0.5, 0.5]], dtype=np.float32)
                        seen_bad = None
                        while True:
                            _, body = await h.predict(x)
                            now = time.perf_counter()
                            if body["model"]["version"] == "1.0.0":
                                break
                            seen_bad = now if seen_bad is None or variant == "slow" else seen_bad
                        assert h.agent is not None and seen_bad is not None
                        agent_s.append(h.agent.rollbacks[-1].seconds)
                        client_s.append(now - seen_bad)
                    label = "NaN output (1 sample)" if variant == "nan" else "p95 latency (10 samples)"
                    rows.append(
                        [
                            label,
                            f"{statistics.median(agent_s) * 1000:.1f}",
                            f"{max(agent_s) * 1000:.1f}",
                            f"{statistics.median(client_s) * 1000:.1f}",
                            f"{max(client_s) * 1000:.1f}",
                            "30000",
                        ]
                    )
        finally:
            server.stop()
    return rows


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, sep, *body])


async def amain(args: argparse.Namespace) -> None:
    latency_rows, memory_rows = await latency_and_memory(args.requests)
    rollback_rows = await rollbacks(args.rollbacks)
    print(f"\nServing latency, {args.requests} sequential requests, MLP 64-128-10, batch 1 (ms)")
    print(table(["path", "p50", "p95", "p99", "p50 over raw", "p50 over raw + HTTP floor"], latency_rows))
    print(f"\nAutomatic rollback, {args.rollbacks} runs each (ms)")
    print(
        table(
            ["failing condition", "agent p50", "agent max", "client p50", "client max", "field reference"],
            rollback_rows,
        )
    )
    print("\nMemory (resident set size, MiB)")
    print(table(["process", "RSS"], memory_rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rollbacks", type=int, default=5)
    args = parser.parse_args()
    _ = onnx_models  # test models are built through the harness
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
