"""Fleet scale: real edge agents (simulated devices) against the real API server and the real operator process.

Run: ``PYTHONPATH=src python benchmarks/fleet_scale.py [--sizes 100,1000,5000] [--watch hub|device] [--offline 3%]``
(``make bench-fleet``). Needs the local control plane binaries (``make controlplane``).

For each fleet size N, in a fresh namespace with its own operator process:

1. N devices (:mod:`edgefleet.testing.fleetsim`, real ``Agent`` loops in a few processes at nice 10) register; 1.0.0 is
   rolled out. ``--watch hub`` (default): one EdgeDevice watch per worker process, as KubeEdge's cloudcore holds
   them; ``--watch device``: a watch per device.
2. **Update**: 2.0.0 is applied (steps 10 % -> pause 0 s -> 100 %, no analysis), timed until every device reports
   2.0.0 active and Healthy, and until the ModelDeployment is Healthy on it.
3. **Steady state**: API requests and writes per device per minute over ``--steady-seconds``.
4. **Abort**: 3.0.0 asks for a p95 latency no device meets; the canaries roll themselves back and the operator
   aborts. Timed from the abort decision (ModelDeployment phase RolledBack) until every device reports 2.0.0 again.
5. With ``--offline 3%``: on the same fleet, that share of the devices (the last ones, spread over every site, line
   and hardware class, in a worker process of their own) loses power (SIGKILL). Timed until the operator counts them
   unreachable ("outage noticed", their Leases expiring), then 2-4 again with 4.0.0 and 5.0.0, where "every device"
   is every reachable one and rates are per running device. The two rows of a size sit side by side in the table.

Printed beside the field's seed figures (5,000 devices; update < 5 min; rollback < 30 s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgefleet.testing import controlplane, fleetstack
from edgefleet.testing.fleetsim import fleet, layout

SEED = {"devices": 5000, "update_s": 300.0, "rollback_s": 30.0}
STEPS: list[dict[str, Any]] = [{"setWeight": 10}, {"pause": {"durationSeconds": 0}}, {"setWeight": 100}]
BAD_STEPS: list[dict[str, Any]] = [
    {"setWeight": 10},
    {"analysis": {"durationSeconds": 60, "minSamples": 1}},
    {"setWeight": 100},
]
HEALTH = {"latencyP95Ms": 5000.0, "maxErrorRate": 0.05, "minSamples": 1, "windowSeconds": 10}
"""Health of the good versions: one sample decides (minSamples 1), so the latency bound is set far above anything a
simulated device measures even when its niced worker waits seconds for the CPU (a 1 s bound let single starved
samples roll a good version back on a device). The bad version of the abort test asks for 0.0001 ms."""
TICKS = os.sysconf("SC_CLK_TCK")
OPERATOR_ENV = {"EDGEFLEET_RESYNC_SECONDS": "10"}
FLEET_NICE = 10
"""The simulated devices run at nice 10: on a real fleet they have their own CPUs, so here they get what the control
plane (API server, etcd, operator, all at nice 0) leaves over instead of an equal share of the two cores."""


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its descendants."""
    total = 0.0
    for p in _tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants."""
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return total


class Probe:
    """Samples the fleet (worker statistics), the ModelDeployment and the operator's resources while waiting."""

    def __init__(self, sim: fleet.Fleet, stack: fleetstack.Stack, apiserver_pid: int | None) -> None:
        self.sim, self.stack, self.apiserver_pid = sim, stack, apiserver_pid
        self.operator_pid = stack.operator.proc.pid if stack.operator.proc else 0
        self.operator_peak_rss = 0

    def resources(self) -> dict[str, float]:
        rss = rss_bytes(self.operator_pid)
        self.operator_peak_rss = max(self.operator_peak_rss, rss)
        out = {"operator_cpu": cpu_seconds(self.operator_pid), "operator_rss": float(rss)}
        if self.apiserver_pid:
            out["apiserver_cpu"] = cpu_seconds(self.apiserver_pid)
        return out

    def until(
        self,
        done: Callable[[layout.Snapshot, dict[str, Any]], bool],
        timeout: float,
        what: str,
        curve: Callable[[layout.Snapshot], int] | None = None,
    ) -> tuple[float, list[tuple[float, int]], dict[str, Any]]:
        """Seconds until ``done(snapshot, md_status)``; with ``curve`` also (seconds, count) samples."""
        began = time.monotonic()
        points: list[tuple[float, int]] = []
        status: dict[str, Any] = {}
        last_md = 0.0
        while True:
            now = time.monotonic()
            snap = self.sim.snapshot()
            if now - last_md >= 1.0:
                status, last_md = self.stack.md_status(), now
                self.resources()
            if curve is not None:
                points.append((now - began, curve(snap)))
            if done(snap, status):
                return now - began, points, status
            if now - began > timeout:
                raise fleet.FleetError(f"timed out after {timeout:.0f}s waiting for {what}; last {status}")
            self.sim.check()
            time.sleep(0.25)


def per_device_minute(before: layout.Snapshot, after: layout.Snapshot, n: int) -> tuple[float, float]:
    """(requests, writes) per device per minute between two snapshots (pure)."""
    minutes = max(after.at - before.at, 1e-6) / 60
    return (
        (after.total_requests - before.total_requests) / n / minutes,
        (after.writes - before.writes) / n / minutes,
    )


def offline_count(share: str, n: int) -> int:
    """``--offline`` as a device count: ``3%`` of ``n`` (at least 1 when the share is not 0), or a count (pure).

    >>> offline_count("3%", 1000), offline_count("3%", 20), offline_count("0%", 100), offline_count("7", 100)
    (30, 1, 0, 7)
    """
    if share.endswith("%"):
        percent = float(share[:-1])
        return max(1, round(n * percent / 100)) if percent > 0 else 0
    return int(share)


def run_size(
    cp: controlplane.ControlPlane,
    n: int,
    processes: int,
    load_rps: float,
    steady_seconds: float,
    watch: str,
    offline: int,
    console: Console,
) -> list[dict[str, Any]]:
    """The rows of one fleet size: all devices on, then (with ``offline``) the same with that many powered off."""
    namespace = f"fleet-{n}-{int(time.time())}"
    cp.kubectl("create", "namespace", namespace)
    root = Path(tempfile.mkdtemp(prefix=f"edgefleet-bench-{n}-"))
    apiserver = cp._procs[-1].pid if cp._procs else None
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, root, ignore_errors=True)
        # The operator's defaults (10 s resync; device changes are reacted to through its EdgeDevice watch).
        stack = cleanup.enter_context(fleetstack.running(cp, namespace, root, extra_env=OPERATOR_ENV))
        spec = layout.FleetSpec(
            kubeconfig=str(cp.kubeconfig),
            namespace=namespace,
            devices=n,
            processes=processes,
            root=str(root / "fleet"),
            trust_keys=(str(stack.trust_key),),
            load_rps=load_rps,
            watch=watch,
            nice=FLEET_NICE,
            offline=offline,
        )
        with fleet.Fleet(spec).start() as sim:
            probe = Probe(sim, stack, apiserver)
            base = {"devices": n, "processes": processes, "loadRps": load_rps, "watch": watch}
            first = {**base, "offline": 0}
            _bring_up(probe, stack, n, first, console)
            _phase(probe, stack, sim, n, 0, ("2.0.0", "3.0.0"), steady_seconds, first, console)
            rows.append(first)
            if offline:
                second = {**base, "offline": offline}
                sim.power_off_offline()
                began = time.monotonic()
                console.print(f"N={n}: {offline} devices powered off (SIGKILL); waiting for the operator to notice")
                t, _, _ = probe.until(
                    lambda _s, m: (m.get("reachability") or {}).get("unreachable") == offline, 900, "outage noticed"
                )
                second["noticedSeconds"] = time.monotonic() - began
                console.print(f"N={n}: the operator counts {offline} unreachable after {t:.1f}s")
                _phase(probe, stack, sim, n, offline, ("4.0.0", "5.0.0"), steady_seconds, second, console)
                rows.append(second)
    return rows


def _bring_up(probe: Probe, stack: fleetstack.Stack, n: int, result: dict[str, Any], console: Console) -> None:
    """Registration and the first install of 1.0.0 on every device."""
    # Generous: on a shared, loaded machine 5,000 niced devices took more than 310 s to register.
    t, _, _ = probe.until(lambda s, _m: s.registered == n, 60 + n / 10, "registration")
    result["registerSeconds"] = t
    console.print(f"N={n}: {n} devices registered in {t:.1f}s")
    stack.apply(stack.deployment("1.0.0", STEPS, HEALTH))
    t, _, _ = probe.until(
        lambda s, m: s.count("1.0.0") == n and m.get("phase") == "Healthy", 120 + n / 5, "1.0.0 everywhere"
    )
    result["initialSeconds"] = t
    console.print(f"N={n}: 1.0.0 installed on every device in {t:.1f}s")
    time.sleep(HEALTH["windowSeconds"] + 1)  # nobody is still on probation


def _phase(
    probe: Probe,
    stack: fleetstack.Stack,
    sim: fleet.Fleet,
    n: int,
    offline: int,
    versions: tuple[str, str],
    steady_seconds: float,
    result: dict[str, Any],
    console: Console,
) -> None:
    """Update to a good version, steady state, then a bad version that is aborted; ``offline`` devices are off, so
    "every device" means every reachable one and rates are per running device."""
    good, bad = versions
    on = n - offline
    tag = f"N={n}, {offline} off"
    # Update.
    res0, snap0 = probe.resources(), sim.snapshot()
    stack.apply(stack.deployment(good, STEPS, HEALTH))
    t, curve, _ = probe.until(
        lambda s, _m: s.count(good) == on, 120 + n / 5, f"{good} everywhere", curve=lambda s: s.count(good)
    )
    snap1 = sim.snapshot()
    t_md, _, status = probe.until(
        lambda _s, m: m.get("phase") == "Healthy" and str(m.get("stableRevision", "")).startswith(good + "-"),
        120,
        f"{good} promoted",
    )
    res1 = probe.resources()
    result.update(
        updateSeconds=t,
        promotedSeconds=t + t_md,
        curve=curve,
        rolloutRates=per_device_minute(snap0, snap1, on),
        operatorCpuUpdate=res1["operator_cpu"] - res0["operator_cpu"],
        apiserverCpuUpdate=res1.get("apiserver_cpu", 0.0) - res0.get("apiserver_cpu", 0.0),
        abortedDuringUpdate=bool(status.get("abortedRevision")),
        unreachableAtEnd=(status.get("reachability") or {}).get("unreachable", 0),
    )
    console.print(f"{tag}: {good} active and Healthy on every reachable device in {t:.1f}s (promoted +{t_md:.1f}s)")

    # Steady state.
    time.sleep(HEALTH["windowSeconds"] + 1)
    res0, snap0 = probe.resources(), sim.snapshot()
    time.sleep(steady_seconds)
    res1, snap1 = probe.resources(), sim.snapshot()
    result.update(
        steadyRates=per_device_minute(snap0, snap1, on),
        operatorCpuSteady=(res1["operator_cpu"] - res0["operator_cpu"]) / steady_seconds,
        apiserverCpuSteady=(res1.get("apiserver_cpu", 0.0) - res0.get("apiserver_cpu", 0.0)) / steady_seconds,
        operatorRss=res1["operator_rss"],
        fleetRss=snap1.rss_bytes,
        rssPerDevice=snap1.rss_bytes / n,
    )
    console.print(f"{tag}: steady state {result['steadyRates'][0]:.2f} req, {result['steadyRates'][1]:.2f} wr")

    # Abort: canaries reject the bad version on their own; the operator aborts; every device is on good again.
    strict = {**HEALTH, "latencyP95Ms": 0.0001}
    stack.apply(stack.deployment(bad, BAD_STEPS, strict))
    t_abort, _, status = probe.until(lambda _s, m: m.get("phase") == "RolledBack", 300, "abort")
    t_back, _, _ = probe.until(
        lambda s, _m: sum(v for k, v in s.reported.items() if k.split("|")[1::2] == [good, "Active"]) >= on,
        120,
        f"every reachable device Active on {good} again",
    )
    canaries = (status.get("devices") or {}).get("updated")
    result.update(abortDecisionSeconds=t_abort, abortBackSeconds=t_back, canaries=canaries)
    console.print(f"{tag}: abort decided {t_abort:.1f}s after apply; all on {good} {t_back:.1f}s later")
    result["operatorPeakRss"] = probe.operator_peak_rss


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        on = r["devices"] - r.get("offline", 0)
        xs = [p[0] for p in r["curve"]]
        ys = [100.0 * p[1] / on for p in r["curve"]]
        watches = "a watch per device" if r.get("watch") == "device" else "a watch per process"
        off = f", {100 * r['offline'] / r['devices']:.0f} % off" if r.get("offline") else ""
        ax.plot(
            xs,
            ys,
            linestyle="--" if r.get("offline") else "-",
            label=f"N = {r['devices']:,}, {watches}{off} ({r['updateSeconds']:.0f} s)",
        )
    ax.set_xlabel("seconds since the new version was applied")
    ax.set_ylabel("% of reachable devices active and Healthy on it")
    ax.set_title("Devices converged over time (zero pause durations)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(results: list[dict[str, Any]]) -> Table:
    t = Table(title="Fleet scale (real agents, real kube-apiserver, real operator)")
    for col in (
        "N",
        "watches",
        "offline",
        "outage noticed",
        "update to 100 %",
        "promoted",
        "bad version -> abort",
        "abort -> all on stable",
        "req/dev/min steady (writes)",
        "req/dev/min rollout (writes)",
        "operator CPU steady / update",
        "API server CPU update",
        "operator RSS",
        "agent RSS/device",
    ):
        t.add_column(col, justify="right")
    for r in results:
        off = r.get("offline", 0)
        t.add_row(
            f"{r['devices']:,}",
            "per device" if r.get("watch") == "device" else "per process",
            f"{off} ({100 * off / r['devices']:.0f} %)" if off else "0",
            f"{r['noticedSeconds']:.0f} s" if off else "",
            f"{r['updateSeconds']:.1f} s" + ("" if not r.get("abortedDuringUpdate") else " (aborted!)"),
            f"{r['promotedSeconds']:.1f} s",
            f"{r['abortDecisionSeconds']:.1f} s",
            f"{r['abortBackSeconds']:.1f} s",
            f"{r['steadyRates'][0]:.2f} ({r['steadyRates'][1]:.2f})",
            f"{r['rolloutRates'][0]:.1f} ({r['rolloutRates'][1]:.1f})",
            f"{100 * r['operatorCpuSteady']:.0f} % / {r['operatorCpuUpdate']:.1f} s",
            f"{r['apiserverCpuUpdate']:.0f} s",
            f"{r['operatorPeakRss'] / 2**20:.0f} MiB",
            f"{r['rssPerDevice'] / 2**10:.0f} KiB",
        )
    t.add_row("seed (field)", "", "", "", "< 300 s @ 5,000", "", "", "< 30 s", "", "", "", "", style="dim")
    return t


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="100,1000,5000", help="comma-separated fleet sizes")
    p.add_argument("--processes", type=int, default=0, help="worker processes (0: one per 1,500 devices, min 2)")
    p.add_argument("--load-rps", type=float, default=0.2, help="synthetic inferences per device per second")
    p.add_argument(
        "--watch",
        choices=layout.WATCH_MODES,
        default="hub",
        help="hub: one EdgeDevice watch per worker process, as KubeEdge's cloudcore holds them (default); "
        "device: a watch per device, as agents with their own kubeconfig do",
    )
    p.add_argument("--steady-seconds", type=float, default=180.0)
    p.add_argument(
        "--offline",
        default="0%",
        help="also measure each size with this share (or count) of its devices powered off (SIGKILL), e.g. 3%%: "
        "the rows of 0 %% and of that share come from the same fleet, one after the other",
    )
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--plot", type=Path, default=Path("docs/fleet_scale.png"))
    args = p.parse_args()
    # Stop cleanly (operator, fleet workers, control plane) on Ctrl-C and on SIGTERM, also when started in the
    # background by a shell that ignores SIGINT for its jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    console = Console(width=200)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    results = []
    with controlplane.running() as cp:
        for n in sizes:
            processes = args.processes or max(2, math.ceil(n / 1500))
            try:
                offline = offline_count(args.offline, n)
                rows = run_size(cp, n, processes, args.load_rps, args.steady_seconds, args.watch, offline, console)
                results.extend(rows)
            except fleet.FleetError as exc:
                console.print(f"[red]N={n} did not finish: {exc}")
                break
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    if not results:
        return 1
    console.print(table(results))
    plot(results, args.plot)
    console.print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
