"""``make demo``: a model update through a pull request, end to end, on an embedded local control plane.

What runs, all on this machine and all real: kube-apiserver + etcd (built once, cached), the kopf operator process
(compiler in a process pool, signed artifact store), a fleet repository in a local Git repo, and ``--devices`` (50)
real edge agents in ``--processes`` (3) worker processes of the fleet simulator (:mod:`edgefleet.testing.fleetsim`),
each device with its own state directory, A/B slots, serving registry and the agent's inference server on its own UNIX
socket, under live traffic. The devices of one process share the API connection pool, the artifact download pool,
a two-thread inference pool and one onnxruntime session per model digest; each still downloads, verifies and
smoke-tests its own copy of every version.

The story: the fleet runs digits-cnn 1.0.0 -> a pull request bumps it to 1.1.0 -> ``edgefleet validate`` and
``edgefleet plan`` -> merge -> ``edgefleet sync`` -> compile -> canary -> waves -> Healthy -> probation passed on every
device; then 1.2.0, which is accurate but too slow for the devices' latency threshold: the canaries roll themselves
back and the operator aborts. A summary table gives the measured times. ``edgefleet dashboard`` is up for the whole
story (its URL is printed) and screenshots of it mid-rollout go to ``--output`` (``./demo-output``). Everything it
started is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
import yaml
from cryptography.hazmat.primitives.asymmetric import ed25519
from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table

from edgefleet.adapters import bundle, gitrepo
from edgefleet.cli import main as cli
from edgefleet.testing import controlplane, demo_dashboard, demo_deployment, fileserver, fleetsim

REPO = controlplane.REPO
NAMESPACE = demo_deployment.NAMESPACE
TRAFFIC_INTERVAL_SECONDS = 0.1  # about 10 requests per second to every device (500 per second for 50)
POLL_SECONDS = 1.0  # each poll of the live view is one kubectl process (~0.1 CPU-seconds)
STATUS_INTERVAL_SECONDS = 5.0  # the agents' statusIntervalSeconds; a changed verdict is reported within 0.25 s
HEALTH = demo_deployment.HEALTH  # what every device judges each version by
console = Console()


# -- the fleet ---------------------------------------------------------------------------------------------------


class Fleet:
    """The operator process, the simulated devices' worker processes, and live traffic to every device's socket."""

    def __init__(self, root: Path, cp: controlplane.ControlPlane, devices: int, processes: int) -> None:
        self.root, self.cp, self.devices, self.processes = root, cp, devices, processes
        self.operator: subprocess.Popen[bytes] | None = None
        self.sim: fleetsim.fleet.Fleet | None = None
        self.sockets: list[Path] = []
        self.latencies: list[float] = []
        self.answered = 0
        self.failed = 0
        self._stop = threading.Event()
        self._traffic: threading.Thread | None = None
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}

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
        args = ["-m", "kopf", "run", "--standalone", "--namespace", NAMESPACE, "-m", "edgefleet.operator"]
        with (self.root / "operator.log").open("ab") as log:
            self.operator = subprocess.Popen(
                [sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def start_devices(self, trust: Path) -> None:
        """``devices`` real agents in ``processes`` worker processes (:mod:`edgefleet.testing.fleetsim`), each with its
        own state directory and its own inference server on ``sockets/<device>.sock``."""
        spec = fleetsim.layout.FleetSpec(
            kubeconfig=str(self.cp.kubeconfig),
            namespace=NAMESPACE,
            devices=self.devices,
            processes=self.processes,
            root=str(self.root / "fleet"),
            trust_keys=(str(trust),),
            app="digit-reader",
            prefix="reader",
            label_layout="plants",
            sockets_dir=str(self.root / "sockets"),
            log_level="INFO",
            switch_interval_seconds=0.001,
            # Quick reactions for a demo instead of the simulator's steady-state economy (see FleetSpec).
            lease_duration_seconds=40,
            status_interval_seconds=STATUS_INTERVAL_SECONDS,
            verdict_check_seconds=0.25,
            # Also the floor between two status writes: under live traffic a device rewrites its health numbers
            # after each echo of its own write (about 7 writes per second at the agent's 0.1 s), not every
            # STATUS_INTERVAL_SECONDS; 1 s keeps 50 devices at about 50 writes per second.
            report_coalesce_seconds=1.0,
            resync_seconds=30.0,
            retry_initial_seconds=0.2,
            retry_max_seconds=2.0,
            health_tick_seconds=0.05,
        )
        self.sockets = [p for i in range(self.devices) if (p := fleetsim.layout.socket_path(spec, i)) is not None]
        # The work directory is removed by main() (or kept with --keep), so the fleet leaves its state there.
        self.sim = fleetsim.fleet.Fleet(spec, remove_root=False).start()

    def check(self) -> None:
        """Raise when the operator or a fleet worker process died."""
        if self.operator is not None and self.operator.poll() is not None:
            raise RuntimeError(f"the operator exited with {self.operator.returncode}; see {self.root / 'operator.log'}")
        if self.sim is not None:
            self.sim.check()

    def start_traffic(self, images: np.ndarray[Any, Any]) -> None:
        bodies = [json.dumps({"inputs": {"image": images[i : i + 1].tolist()}}) for i in range(64)]

        async def one(socket: Path, offset: int) -> None:
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket))) as session:
                i = offset
                due = time.perf_counter() + offset % 10 * TRAFFIC_INTERVAL_SECONDS / 10  # spread the devices out
                while not self._stop.is_set():
                    # A steady rate per device: a slow model gets its next request as soon as it answers.
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    due = max(due + TRAFFIC_INTERVAL_SECONDS, time.perf_counter())
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

        async def run() -> None:
            await asyncio.gather(*(one(s, n) for n, s in enumerate(self.sockets)))

        self._traffic = threading.Thread(target=lambda: asyncio.run(run()), daemon=True)
        self._traffic.start()

    def traffic(self) -> str:
        """One line about the live traffic so far."""
        p95 = f", client-side p95 {np.percentile(self.latencies[-5000:], 95):.2f} ms" if self.latencies else ""
        return f"live traffic to {len(self.sockets)} sockets: {self.answered} answered, {self.failed} failed{p95}"

    def logged(self, text: str) -> int:
        """How many lines of the fleet workers' logs contain ``text``."""
        logs = sorted((self.root / "fleet").glob("worker-*.log"))
        return sum(line.count(text) for log in logs for line in log.read_text(errors="replace").splitlines())

    def stop(self) -> None:
        self._stop.set()
        if self._traffic is not None:
            self._traffic.join(timeout=10)
        try:
            if self.sim is not None:
                self.sim.stop()
        finally:
            if self.operator is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.operator.pid, signal.SIGTERM)
                try:
                    self.operator.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(self.operator.pid, signal.SIGKILL)
                    self.operator.wait()


# -- observing ---------------------------------------------------------------------------------------------------


def observe(cp: controlplane.ControlPlane) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The ModelDeployment's status and each device's status of ``digits``, from one kubectl call."""
    result = cp.kubectl("-n", NAMESPACE, "get", "md,ed", "-o", "json", check=False)
    items = json.loads(result.stdout)["items"] if result.returncode == 0 else []
    status: dict[str, Any] = {}
    devices: dict[str, dict[str, Any]] = {}
    for item in items:
        if item["kind"] == "ModelDeployment":
            status = item.get("status") or {}
            continue
        models = (item.get("status") or {}).get("models") or []
        devices[item["metadata"]["name"]] = next((m for m in models if m.get("name") == "digits"), {})
    return status, devices


def on_version(entry: dict[str, Any]) -> str:
    """``"1.1.0 Active"``: the version a device serves and its install state."""
    return f"{entry.get('activeVersion') or '-'} {entry.get('state') or ''}".strip()


def passed_probation(entry: dict[str, Any], version: str) -> bool:
    """The device serves ``version`` and its health window after the switch ended without a rollback (the agent
    says so in its status message, see ``Agent.check_probation``)."""
    return entry.get("activeVersion") == version and "passed probation" in (entry.get("message") or "")


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


def _view(title: str, status: dict[str, Any], devices: dict[str, dict[str, Any]], fleet: Fleet) -> Table:
    ready: dict[str, Any] = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), {})
    counts = status.get("devices") or {}
    table = Table(title=title, caption=f"{(ready.get('message') or '')[:150]}\n{fleet.traffic()}")
    for column in ("phase", "step", "targeted", "updated", "healthy", "failed", "stable", "canary"):
        table.add_column(column)
    table.add_row(
        str(status.get("phase", "-")), str(status.get("currentStepIndex", "-")),
        *(str(counts.get(k, 0)) for k in ("targeted", "updated", "healthy", "failed")),
        str(status.get("stableRevision", "-")), str(status.get("canaryRevision", "-")),
    )  # fmt: skip
    versions: dict[str, int] = {}
    for entry in devices.values():
        versions[on_version(entry)] = versions.get(on_version(entry), 0) + 1
    table.add_row("devices", ", ".join(f"{v}: {n}" for v, n in sorted(versions.items())), *[""] * 6)
    return table


def watch(
    cp: controlplane.ControlPlane,
    fleet: Fleet,
    title: str,
    done: Callable[[dict[str, Any], dict[str, dict[str, Any]]], bool],
    timeout: float,
    also: Callable[[dict[str, Any], dict[str, dict[str, Any]]], None] | None = None,
) -> float:
    """Show the rollout live until ``done(status, devices)``; returns the seconds it took. ``also`` sees every poll
    (the dashboard's screenshots)."""
    began = time.monotonic()
    with Live(console=console, refresh_per_second=2) as live:
        while time.monotonic() - began < timeout:
            status, devices = observe(cp)
            live.update(_view(title, status, devices, fleet))
            if also is not None:
                also(status, devices)
            if done(status, devices):
                return time.monotonic() - began
            fleet.check()
            time.sleep(POLL_SECONDS)
    raise TimeoutError(f"{title}: not done after {timeout:.0f} s; see the logs")


# -- the story ---------------------------------------------------------------------------------------------------


def _capture(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli.main(argv)
    if code == 130:  # the command caught a Ctrl-C: the demo stops too
        raise KeyboardInterrupt
    return code, out.getvalue()


def _sync(cp: controlplane.ControlPlane, repo: Path, cache: Path) -> None:
    code, out = _capture(["sync", "--once", "--repo", str(repo), "--branch", "main", "--path", "fleet",
                          "--kubeconfig", str(cp.kubeconfig), "--cache", str(cache)])  # fmt: skip
    console.print(f"[bold]edgefleet sync[/]: {out.strip().splitlines()[-1] if out.strip() else ''}")
    if code != 0:
        raise RuntimeError(out)


def _pull_request(
    cp: controlplane.ControlPlane, repo_dir: Path, branch: str, body: dict[str, Any], message: str
) -> None:
    repo = gitrepo.open_repo(repo_dir)
    repo.git.checkout("-b", branch)
    (repo_dir / "fleet" / "digits.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    repo.git.add(A=True)
    repo.index.commit(message)
    code, out = _capture(["validate", str(repo_dir / "fleet")])
    console.print(
        Panel(out.strip(), title=f"edgefleet validate ({branch})", border_style="green" if code == 0 else "red")
    )
    code, out = _capture(["plan", "--repo", str(repo_dir), "--base", "main", "--head", branch, "--path", "fleet",
                          "--kubeconfig", str(cp.kubeconfig)])  # fmt: skip
    console.print(Panel(Markdown(out), title="edgefleet plan (posted on the pull request)"))
    repo.git.checkout("main")
    repo.git.merge("--ff-only", branch)


def run(root: Path, devices: int, processes: int, output: Path) -> dict[str, float]:
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
    example = demo_deployment.example_model(root / "example")
    source = (example / "model.onnx").read_bytes()
    (models / "digits-1.0.0.onnx").write_bytes(source)
    (models / "digits-1.1.0.onnx").write_bytes(demo_deployment.retrained(source, seed=1))
    (models / "digits-1.2.0.onnx").write_bytes(
        demo_deployment.too_slow(demo_deployment.retrained(source, seed=2), demo_deployment.SLOW_DEPTH)
    )
    for name in ("calibration.npz", "evaluation.npz"):
        shutil.copy(example / name, models / name)
    images = np.load(models / "evaluation.npz")["image"]
    key = bundle.generate_key()
    trust = root / "trust.pem"
    trust.write_bytes(bundle.public_key_pem(key.public_key()))
    fleet = Fleet(root, cp, devices, processes)
    dash = demo_dashboard.Dashboard(cp, NAMESPACE, output, root / "dashboard.log")
    try:
        with fileserver.served(models) as url:
            fleet.start_operator(key)
            console.print(f"[bold]Fleet dashboard[/] (read-only, up for the whole demo): {dash.start()}")
            dash.open()
            fleet.start_devices(trust)
            times["devices registered (s)"] = watch(
                cp, fleet, f"{devices} devices (real edge agents in {processes} processes) registering",
                lambda _s, d: len(d) == devices, 120,
            )  # fmt: skip
            fleet.start_traffic(images)
            repo_dir = root / "fleet-repo"
            (repo_dir / "fleet").mkdir(parents=True)
            (repo_dir / "fleet" / "digits.yaml").write_text(
                yaml.safe_dump(demo_deployment.deployment(url, "1.0.0", models, "auto"), sort_keys=False)
            )
            gitrepo.init(repo_dir, "digits-cnn 1.0.0 on the digit readers")
            cache = root / "git-cache"
            _sync(cp, repo_dir, cache)
            times["initial install of 1.0.0 (s)"] = watch(
                cp, fleet, "1.0.0: compile, then install on every device", lambda s, _d: s.get("phase") == "Healthy",
                300,
            )  # fmt: skip
            _pull_request(
                cp,
                repo_dir,
                "digits-1.1.0",
                demo_deployment.deployment(url, "1.1.0", models, "auto"),
                "Roll out digits 1.1.0",
            )
            _sync(cp, repo_dir, cache)
            times["update to 1.1.0: merge to 100 % healthy (s)"] = watch(
                cp, fleet, "1.1.0: compile, canary, analysis, waves",
                lambda s, _d: s.get("phase") == "Healthy" and str(s.get("stableRevision", "")).startswith("1.1.0"),
                300, dash.when("dashboard-1.1.0-rollout.png", demo_dashboard.canary_out("1.1.0")),
            )  # fmt: skip
            # The last wave is still on probation; the next pull request waits for it, as an operator would. (The
            # too-slow canaries below load the processes they share with other devices: a device still judging
            # 1.1.0 there could count that load against 1.1.0, which a physical device never would.)
            times["1.1.0 passed probation on every device (s)"] = watch(
                cp, fleet, f"1.1.0: probation ({HEALTH['windowSeconds']} s of live traffic per device)",
                lambda _s, d: len(d) == devices and all(passed_probation(e, "1.1.0") for e in d.values()),
                HEALTH["windowSeconds"] + 120,
            )  # fmt: skip
            if p95 := device_p95(cp):
                times["on-device inference p95 of 1.1.0, worst device (ms)"] = max(p95)
            dash.arm("dashboard-1.2.0-rollback.png", demo_dashboard.ROLLED_BACK_TILE)
            _pull_request(
                cp,
                repo_dir,
                "digits-1.2.0",
                demo_deployment.deployment(url, "1.2.0", models, "fp32"),
                "Roll out digits 1.2.0",
            )
            _sync(cp, repo_dir, cache)
            times["compile of 1.2.0 (s)"] = watch(
                cp, fleet, "1.2.0: compile", lambda s, _d: str(s.get("canaryRevision", "")).startswith("1.2.0"), 300
            )
            times["bad 1.2.0: canary to every device back on 1.1.0 (s)"] = watch(
                cp, fleet, "1.2.0: too slow on the devices - automatic rollback",
                lambda s, d: s.get("phase") == "RolledBack"
                and all(e.get("activeVersion") == "1.1.0" for e in d.values()),
                240,
            )  # fmt: skip
            dash.screenshot("dashboard-1.2.0-aborted.png")
            status, _ = observe(cp)
            if p95 := device_p95(cp):
                # The canaries' slow calls loaded the processes they share with other devices (see above).
                times["... the same after the 1.2.0 canaries (ms)"] = max(p95)
            ready = next(c for c in status["conditions"] if c["type"] == "Ready")
            console.print(Panel(f"Ready={ready['status']} reason={ready['reason']}\n{ready['message']}",
                                title="kubectl get md digits: why it rolled back"))  # fmt: skip
            console.rule("kubectl get md,ed -n edgefleet-demo")
            print(cp.kubectl("-n", NAMESPACE, "get", "md,ed").stdout.rstrip(), flush=True)
    finally:
        dash.stop()
        fleet.stop()
        cp.stop()
    if dash.saved:
        console.print("Dashboard screenshots: " + ", ".join(str(p) for p in dash.saved))
    elif dash.missing:
        console.print(f"[yellow]No dashboard screenshots[/]: {dash.missing}")
    if fleet.latencies:
        lat = np.array(fleet.latencies)
        times["client-side p50 over the local HTTP API, all versions (ms)"] = float(np.percentile(lat, 50))
        times["client-side p95 over the local HTTP API, all versions (ms)"] = float(np.percentile(lat, 95))
    # From the agents' own log lines (the fleet's logs are still there: main() removes the work directory later).
    times["1.2.0 canaries (switched to it)"] = float(fleet.logged("Switched model model=digits version=1.2.0"))
    times["... of which rolled themselves back"] = float(fleet.logged("Rolled back model=digits from=1.2.0"))
    times["inference requests answered"] = float(fleet.answered)
    times["inference requests failed"] = float(fleet.failed)
    return times


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through run()'s cleanup, as Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgefleet.testing.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50, help="simulated devices (default 50)")
    parser.add_argument("--processes", type=int, default=3, help="worker processes they run in (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and its logs")
    parser.add_argument(
        "--output", type=Path, default=Path("demo-output"), help="where the dashboard screenshots go (./demo-output)"
    )
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    root = Path(tempfile.mkdtemp(prefix="edgefleet-demo-"))
    try:
        times = run(root, args.devices, args.processes, args.output)
    except (controlplane.ControlPlaneError, TimeoutError, RuntimeError) as exc:
        console.print(f"[red]demo failed:[/] {exc}\nlogs: {root}")
        args.keep = True
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: everything the demo started has been stopped")
        return 130
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
