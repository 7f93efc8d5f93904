"""``make demo``: a model update through a pull request, end to end, on an embedded local control plane.

What runs, all on this machine and all real: kube-apiserver + etcd (built once, cached), the kopf operator process
(compiler in a process pool, signed artifact store), ``--devices`` edgefleet-agent processes (each with its own
state directory, A/B slots, onnxruntime session and inference server on a UNIX socket) serving live traffic, and
a fleet repository in a local Git repo.

The story: the fleet runs digits-cnn 1.0.0 -> a pull request bumps it to 1.1.0 -> ``edgefleet validate`` and
``edgefleet plan`` -> merge -> ``edgefleet sync`` -> compile -> canary -> waves -> Healthy; then 1.2.0, which is
accurate but too slow for the devices' latency threshold: the canaries roll themselves back and the operator
aborts. A summary table gives the measured times. Everything it started is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import onnx
import yaml
from cryptography.hazmat.primitives.asymmetric import ed25519
from onnx import helper, numpy_helper
from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table

from edgefleet.adapters import bundle, controlplane, fileserver, gitrepo
from edgefleet.cli import main as cli

REPO = controlplane.REPO
EXAMPLE = REPO / "examples" / "models" / "digits-cnn"
NAMESPACE = "edgefleet-demo"
console = Console()


# -- models ------------------------------------------------------------------------------------------------------


def retrained(model: bytes, seed: int) -> bytes:
    """A "retrained" model: the same network with its weights nudged by 0.1 % noise (predictions unchanged)."""
    proto = onnx.load_from_string(model)
    rng = np.random.default_rng(seed)
    for init in proto.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32 and array.size > 16:
            noisy = array * (1 + 0.001 * rng.standard_normal(array.shape).astype(np.float32))
            init.CopyFrom(numpy_helper.from_array(noisy.astype(np.float32), init.name))
    data: bytes = proto.SerializeToString()
    return data


def too_slow(model: bytes, width: int = 1024, depth: int = 60) -> bytes:
    """The same predictions plus a dead branch of ``depth`` dense layers: accurate, but far over 5 ms per call."""
    proto = onnx.load_from_string(model)
    graph = proto.graph
    out = graph.output[0].name
    for node in graph.node:
        node.output[:] = [f"{out}_fast" if o == out else o for o in node.output]
    rng = np.random.default_rng(7)
    graph.initializer.extend(
        [
            numpy_helper.from_array((rng.standard_normal((64, width)) * 0.01).astype(np.float32), "slow_in"),
            numpy_helper.from_array((rng.standard_normal((width, width)) * 0.01).astype(np.float32), "slow_w"),
            numpy_helper.from_array(np.ones((width, 1), np.float32), "slow_sum"),
            numpy_helper.from_array(np.zeros((1,), np.float32), "slow_zero"),
        ]
    )
    nodes = [helper.make_node("Flatten", [graph.input[0].name], ["slow_flat"]),
             helper.make_node("MatMul", ["slow_flat", "slow_in"], ["slow_0"])]  # fmt: skip
    for i in range(depth):
        nodes.append(helper.make_node("MatMul", [f"slow_{i}", "slow_w"], [f"slow_{i + 1}"]))
    nodes += [
        helper.make_node("MatMul", [f"slow_{depth}", "slow_sum"], ["slow_total"]),
        helper.make_node("Mul", ["slow_total", "slow_zero"], ["slow_nothing"]),
        helper.make_node("Add", [f"{out}_fast", "slow_nothing"], [out]),
    ]
    graph.node.extend(nodes)
    onnx.checker.check_model(proto)
    data: bytes = proto.SerializeToString()
    return data


# -- manifests ---------------------------------------------------------------------------------------------------


def deployment(url: str, version: str, models: Path, precision: str) -> dict[str, Any]:
    digest = hashlib.sha256((models / f"digits-{version}.onnx").read_bytes()).hexdigest()
    dataset = {
        "uri": f"{url}/evaluation.npz",
        "sha256": hashlib.sha256((models / "evaluation.npz").read_bytes()).hexdigest(),
    }
    return {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "digits", "namespace": NAMESPACE},
        "spec": {
            "model": {
                "name": "digits",
                "version": version,
                "uri": f"{url}/digits-{version}.onnx",
                "sha256": digest,
                "task": "classification",
            },
            "compile": {
                "targets": [
                    {
                        "name": "x86-avx2",
                        "selector": {"matchLabels": {"edgefleet.io/hardware-class": "x86-avx2"}},
                        "precision": precision,
                        "calibration": {
                            "uri": f"{url}/calibration.npz",
                            "sha256": hashlib.sha256((models / "calibration.npz").read_bytes()).hexdigest(),
                        },
                        "evaluation": dataset,
                        "accuracyBudget": {"maxAccuracyDrop": 0.01},
                    }
                ]
            },
            "selector": {"matchLabels": {"app": "digit-reader"}},
            "rollout": {
                "steps": [
                    {"setWeight": 25},
                    {"analysis": {"durationSeconds": 3, "minSamples": 30}},
                    {"setWeight": 60},
                    {"setWeight": 100},
                ],
                "maxUnavailable": "34%",
                "progressDeadlineSeconds": 90,
            },
            "health": {"latencyP95Ms": 5.0, "maxErrorRate": 0.01, "minSamples": 10, "windowSeconds": 3},
        },
    }


# -- the fleet ---------------------------------------------------------------------------------------------------


class Fleet:
    """The operator process and the agent processes, with live traffic to every agent's inference server."""

    def __init__(self, root: Path, cp: controlplane.ControlPlane, devices: int) -> None:
        self.root, self.cp, self.devices = root, cp, devices
        self.procs: list[subprocess.Popen[bytes]] = []
        self.sockets: list[Path] = []
        self.latencies: list[float] = []
        self.answered = 0
        self.failed = 0
        self._stop = threading.Event()
        self._traffic: threading.Thread | None = None
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}

    def _spawn(self, args: list[str], log: str, env: dict[str, str] | None = None) -> None:
        with (self.root / log).open("ab") as handle:
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, *args], env=env or self.env, stdout=handle, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )  # fmt: skip

    def start_operator(self, key: ed25519.Ed25519PrivateKey) -> None:
        self.cp.kubectl("create", "namespace", NAMESPACE)
        pem = bundle.private_key_pem(key).decode()
        self.cp.kubectl(
            "-n", NAMESPACE, "create", "secret", "generic", "signing", f"--from-literal=signing-key.pem={pem}"
        )
        port = controlplane.free_port()
        env = {
            **self.env,
            "KUBECONFIG": str(self.cp.kubeconfig),
            "EDGEFLEET_STORE_DIR": str(self.root / "artifacts"),
            "EDGEFLEET_STORE_HOST": "127.0.0.1",
            "EDGEFLEET_STORE_PORT": str(port),
            "EDGEFLEET_STORE_URL": f"http://127.0.0.1:{port}",
            "EDGEFLEET_SIGNING_SECRET": f"{NAMESPACE}/signing",
            "EDGEFLEET_RESYNC_SECONDS": "1",
        }
        self._spawn(["-m", "kopf", "run", "--standalone", "--namespace", NAMESPACE, "-m", "edgefleet.operator"],
                    "operator.log", env)  # fmt: skip

    def start_agents(self, trust: Path) -> None:
        for i in range(self.devices):
            site, line = f"plant-{'north' if i % 2 == 0 else 'south'}", f"line-{i % 3 + 1}"
            name = f"{site}-{line}-{i:02d}"
            config = self.root / f"{name}.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "deviceName": name,
                        "namespace": NAMESPACE,
                        "labels": {
                            "app": "digit-reader",
                            "edgefleet.io/site": site,
                            "edgefleet.io/line": line,
                            "edgefleet.io/hardware-class": "x86-avx2",
                        },
                        "stateDir": str(self.root / "devices" / name),
                        "trustKeys": [str(trust)],
                        "api": {"mode": "kubeconfig", "kubeconfig": str(self.cp.kubeconfig)},
                        "server": {"unixSocket": str(self.root / f"{name}.sock")},
                        "retryInitialSeconds": 0.2,
                        "retryMaxSeconds": 2.0,
                        "statusIntervalSeconds": 0.5,
                        "healthTickSeconds": 0.05,
                    }
                )
            )
            self.sockets.append(self.root / f"{name}.sock")
            self._spawn(["-m", "edgefleet.edge_reconciler.main", "--config", str(config)], f"{name}.log")

    def start_traffic(self, images: np.ndarray[Any, Any]) -> None:
        bodies = [json.dumps({"inputs": {"image": images[i : i + 1].tolist()}}) for i in range(64)]

        async def one(socket: Path, offset: int) -> None:
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket))) as session:
                i = offset
                while not self._stop.is_set():
                    began = time.perf_counter()
                    try:
                        async with session.post("http://edge/v1/models/digits:predict", data=bodies[i % 64],
                                                headers={"Content-Type": "application/json"}) as response:  # fmt: skip
                            await response.read()
                            if response.status == 200:
                                self.answered += 1
                                self.latencies.append((time.perf_counter() - began) * 1000)
                            elif response.status != 404:  # 404: no model installed yet
                                self.failed += 1
                    except (aiohttp.ClientError, OSError):
                        pass
                    i += 1
                    await asyncio.sleep(0.05)

        async def run() -> None:
            await asyncio.gather(*(one(s, n) for n, s in enumerate(self.sockets)))

        self._traffic = threading.Thread(target=lambda: asyncio.run(run()), daemon=True)
        self._traffic.start()

    def stop(self) -> None:
        self._stop.set()
        if self._traffic is not None:
            self._traffic.join(timeout=10)
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# -- observing ---------------------------------------------------------------------------------------------------


def md_status(cp: controlplane.ControlPlane) -> dict[str, Any]:
    result = cp.kubectl("-n", NAMESPACE, "get", "md", "digits", "-o", "json", check=False)
    if result.returncode != 0:
        return {}
    status: dict[str, Any] = json.loads(result.stdout).get("status") or {}
    return status


def device_versions(cp: controlplane.ControlPlane) -> dict[str, str]:
    items = json.loads(cp.kubectl("-n", NAMESPACE, "get", "ed", "-o", "json").stdout)["items"]
    out = {}
    for item in items:
        models = (item.get("status") or {}).get("models") or []
        entry: dict[str, Any] = next((m for m in models if m.get("name") == "digits"), {})
        out[item["metadata"]["name"]] = f"{entry.get('activeVersion') or '-'} {entry.get('state') or ''}".strip()
    return out


def device_p95(cp: controlplane.ControlPlane) -> list[float]:
    """The p95 inference latency each device measured over its last health window (metadata it reports)."""
    items = json.loads(cp.kubectl("-n", NAMESPACE, "get", "ed", "-o", "json").stdout)["items"]
    out = []
    for item in items:
        for entry in (item.get("status") or {}).get("models") or []:
            value = (entry.get("health") or {}).get("latencyP95Ms")
            if value is not None:
                out.append(float(value))
    return out


def _view(cp: controlplane.ControlPlane, title: str) -> Table:
    status = md_status(cp)
    devices = device_versions(cp)
    ready: dict[str, Any] = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), {})
    counts = status.get("devices") or {}
    table = Table(title=title, caption=(ready.get("message") or "")[:150])
    for column in ("phase", "step", "targeted", "updated", "healthy", "failed", "stable", "canary"):
        table.add_column(column)
    table.add_row(
        str(status.get("phase", "-")), str(status.get("currentStepIndex", "-")),
        *(str(counts.get(k, 0)) for k in ("targeted", "updated", "healthy", "failed")),
        str(status.get("stableRevision", "-")), str(status.get("canaryRevision", "-")),
    )  # fmt: skip
    versions: dict[str, int] = {}
    for version in devices.values():
        versions[version] = versions.get(version, 0) + 1
    table.add_row("devices", ", ".join(f"{v}: {n}" for v, n in sorted(versions.items())), *[""] * 6)
    return table


def watch(cp: controlplane.ControlPlane, title: str, done: Callable[[dict[str, Any]], bool], timeout: float) -> float:
    """Show the rollout live until ``done(status)``; returns the seconds it took."""
    began = time.monotonic()
    with Live(_view(cp, title), console=console, refresh_per_second=2) as live:
        while time.monotonic() - began < timeout:
            status = md_status(cp)
            live.update(_view(cp, title))
            if done(status):
                return time.monotonic() - began
            time.sleep(0.5)
    raise TimeoutError(f"{title}: not done after {timeout:.0f} s; see the logs")


# -- the story ---------------------------------------------------------------------------------------------------


def _capture(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli.main(argv)
    return code, out.getvalue()


def _sync(cp: controlplane.ControlPlane, repo: Path, cache: Path) -> None:
    code, out = _capture(["sync", "--once", "--repo", str(repo), "--branch", "main", "--path", "fleet",
                          "--kubeconfig", str(cp.kubeconfig), "--cache", str(cache)])  # fmt: skip
    console.print(f"[bold]edgefleet sync[/]: {out.strip().splitlines()[-1] if out.strip() else ''}")
    if code != 0:
        raise RuntimeError(out)


def _pull_request(repo_dir: Path, branch: str, body: dict[str, Any], message: str) -> None:
    repo = gitrepo.open_repo(repo_dir)
    repo.git.checkout("-b", branch)
    (repo_dir / "fleet" / "digits.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    repo.git.add(A=True)
    repo.index.commit(message)
    code, out = _capture(["validate", str(repo_dir / "fleet")])
    console.print(
        Panel(out.strip(), title=f"edgefleet validate ({branch})", border_style="green" if code == 0 else "red")
    )
    code, out = _capture(["plan", "--repo", str(repo_dir), "--base", "main", "--head", branch, "--path", "fleet"])
    console.print(Panel(Markdown(out), title="edgefleet plan (posted on the pull request)"))
    repo.git.checkout("main")
    repo.git.merge("--ff-only", branch)


def run(root: Path, devices: int) -> dict[str, float]:
    times: dict[str, float] = {}
    console.rule("[bold]edgefleet demo: models to a fleet through pull requests")
    began = time.monotonic()
    controlplane.find_binaries()
    cp = controlplane.start(root / "controlplane")
    times["control plane start (s)"] = time.monotonic() - began
    console.print(
        f"[green]✓[/] local kube-apiserver + etcd up, CRDs installed ({times['control plane start (s)']:.1f} s)"
    )
    models = root / "models"
    models.mkdir()
    source = (EXAMPLE / "model.onnx").read_bytes()
    (models / "digits-1.0.0.onnx").write_bytes(source)
    (models / "digits-1.1.0.onnx").write_bytes(retrained(source, seed=1))
    (models / "digits-1.2.0.onnx").write_bytes(too_slow(retrained(source, seed=2)))
    for name in ("calibration.npz", "evaluation.npz"):
        shutil.copy(EXAMPLE / name, models / name)
    images = np.load(models / "evaluation.npz")["image"]
    key = bundle.generate_key()
    trust = root / "trust.pem"
    trust.write_bytes(bundle.public_key_pem(key.public_key()))
    fleet = Fleet(root, cp, devices)
    try:
        with fileserver.served(models) as url:
            fleet.start_operator(key)
            fleet.start_agents(trust)
            times["devices registered (s)"] = watch(
                cp, f"{devices} edgefleet-agent processes registering",
                lambda _s: len(device_versions(cp)) == devices, 120,
            )  # fmt: skip
            fleet.start_traffic(images)
            repo_dir = root / "fleet-repo"
            (repo_dir / "fleet").mkdir(parents=True)
            (repo_dir / "fleet" / "digits.yaml").write_text(
                yaml.safe_dump(deployment(url, "1.0.0", models, "auto"), sort_keys=False)
            )
            gitrepo.init(repo_dir, "digits-cnn 1.0.0 on the digit readers")
            cache = root / "git-cache"
            _sync(cp, repo_dir, cache)
            times["initial install of 1.0.0 (s)"] = watch(
                cp, "1.0.0: compile, then install on every device", lambda s: s.get("phase") == "Healthy", 300
            )
            _pull_request(repo_dir, "digits-1.1.0", deployment(url, "1.1.0", models, "auto"), "Roll out digits 1.1.0")
            _sync(cp, repo_dir, cache)
            times["update to 1.1.0: merge to 100 % healthy (s)"] = watch(
                cp, "1.1.0: compile, canary, analysis, waves",
                lambda s: s.get("phase") == "Healthy" and str(s.get("stableRevision", "")).startswith("1.1.0"), 300,
            )  # fmt: skip
            _pull_request(repo_dir, "digits-1.2.0", deployment(url, "1.2.0", models, "fp32"), "Roll out digits 1.2.0")
            _sync(cp, repo_dir, cache)
            times["compile of 1.2.0 (s)"] = watch(
                cp, "1.2.0: compile", lambda s: str(s.get("canaryRevision", "")).startswith("1.2.0"), 300
            )
            times["bad 1.2.0: canary to every device back on 1.1.0 (s)"] = watch(
                cp, "1.2.0: too slow on the devices - automatic rollback",
                lambda s: s.get("phase") == "RolledBack"
                and all(v.startswith("1.1.0") for v in device_versions(cp).values()),
                240,
            )  # fmt: skip
            status = md_status(cp)
            p95 = device_p95(cp)
            if p95:
                times["on-device inference p95, 1.1.0, worst device (ms)"] = max(p95)
            ready = next(c for c in status["conditions"] if c["type"] == "Ready")
            console.print(Panel(f"Ready={ready['status']} reason={ready['reason']}\n{ready['message']}",
                                title="kubectl get md digits: why it rolled back"))  # fmt: skip
            console.rule("kubectl get md,ed -n edgefleet-demo")
            print(cp.kubectl("-n", NAMESPACE, "get", "md,ed").stdout.rstrip(), flush=True)
    finally:
        fleet.stop()
        cp.stop()
    if fleet.latencies:
        lat = np.array(fleet.latencies)
        times["client-side p50 over the local HTTP API, all versions (ms)"] = float(np.percentile(lat, 50))
        times["client-side p95 over the local HTTP API, all versions (ms)"] = float(np.percentile(lat, 95))
    times["inference requests answered"] = float(fleet.answered)
    times["inference requests failed"] = float(fleet.failed)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgefleet.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=12, help="edgefleet-agent processes (default 12)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and its logs")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="edgefleet-demo-"))
    try:
        times = run(root, args.devices)
    except (controlplane.ControlPlaneError, TimeoutError, RuntimeError) as exc:
        console.print(f"[red]demo failed:[/] {exc}\nlogs: {root}")
        args.keep = True
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    table = Table(title="edgefleet demo: measured")
    table.add_column("what")
    table.add_column("value", justify="right")
    for what, value in times.items():
        table.add_row(what, f"{value:.2f}" if "(ms)" in what else f"{value:.1f}" if "(s)" in what else f"{value:.0f}")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
