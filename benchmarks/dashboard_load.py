"""Dashboard load: ``edgefleet dashboard`` over 5,000 EdgeDevices in the real API server, measured in headless Chromium.

Run: ``PYTHONPATH=src python benchmarks/dashboard_load.py [--devices 5000] [--changes 20] [--screenshots DIR]``
(part of ``make bench``). Needs the local control plane binaries (``make controlplane``) and Chromium
(``hack/install-system-packages.sh``).

1. A fleet in the middle of a rollout is written into the API server (:mod:`edgefleet.testing.fleetscene`: one
   ModelDeployment, ``--devices`` EdgeDevices over 2 plants x 5 lines with desired entries, agent reports and heartbeat
   Leases; 73 % stable, 14 % canary, 6 % installing, 2 % rolled back, 1 % failed, 4 % offline).
2. The real ``edgefleet dashboard`` command starts: time until it serves (list + watch synced, every tile computed).
3. **First render**, in a fresh browser page each time: from navigation start to the page's ``edgefleet-first-render``
   mark (HTML, script, stream connected, snapshot parsed and drawn), read from the page's Performance API. Once for the
   page as it opens at this size (counts per site and line, lines folded) and once with every tile drawn (``?lines=*``).
4. **Update round trip**: a canary device's status is rewritten through the API server (as its agent would after a
   rollback) and the page, with that device's line open, is watched by a MutationObserver until its tile shows the
   new state; the time from just before the write to the observed change is one sample (``--changes`` of them,
   alternating rolled back and canary over different devices). The same for a device whose line is folded, seen as
   the change of the line's counts.

Printed beside the targets (first render < 2 s, a change visible < 1 s) and the baseline a user has without the
dashboard: ``kubectl get edgedevices`` of the namespace (5,000 rows, one snapshot, re-run to see a change).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from edgefleet.adapters import kube
from edgefleet.testing import browser, controlplane, fleetscene

T = TypeVar("T")
TARGET_FIRST_RENDER_S = 2.0
TARGET_CHANGE_S = 1.0
RENDERS = 5
console = Console()

# Armed before the write; window.__seen resolves to the wall-clock time the page changed.
OBSERVE = """(id) => { window.__seen = new Promise((resolve) => {
  const tile = document.querySelector(`button.tile[data-id="${id}"]`);
  const before = tile.dataset.state;
  const seen = new MutationObserver(() => {
    if (tile.dataset.state !== before) { seen.disconnect(); resolve(Date.now()); }
  });
  seen.observe(tile, { attributes: true, attributeFilter: ["data-state"] });
}); }"""
OBSERVE_COUNT = """(key) => { window.__seen = new Promise((resolve) => {
  const bar = document.querySelector(`div.line[data-line="${key}"] .bar`);
  const read = () => Array.from(bar.children).map((s) => s.className + s.title).join("|");
  const before = read();
  const seen = new MutationObserver(() => {
    if (read() !== before) { seen.disconnect(); resolve(Date.now()); }
  });
  seen.observe(bar, { childList: true, subtree: true, attributes: true });
}); }"""


@contextlib.contextmanager
def dashboard(cp: controlplane.ControlPlane, namespace: str, log: Path) -> Iterator[tuple[str, float, int]]:
    """The real command; yields its URL, the seconds until it served and its pid."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(controlplane.REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    args = ["dashboard", "--kubeconfig", str(cp.kubeconfig), "-n", namespace, "--port", "0"]
    began = time.monotonic()
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgefleet.cli.main", *args], env=env, stdout=subprocess.PIPE, stderr=err
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if not found:
            raise RuntimeError(f"the dashboard did not start: {line}\n{log.read_text()[-2000:]}")
        yield found.group(0), time.monotonic() - began, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]


class Writer:
    """The test's own API writes, on an event loop of their own thread (Playwright's sync API owns the main one)."""

    def __init__(self, cp: controlplane.ControlPlane) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = self.call(_connect(cp))

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=600)

    def close(self) -> None:
        self.call(self.client.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def line_of(scene: fleetscene.Scene, i: int) -> str:
    labels = scene.labels(i)
    return f"{labels['edgefleet.io/site']}/{labels['edgefleet.io/line']}"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def first_render(context: Any, url: str) -> tuple[float, int]:
    """Seconds from navigation start to the first drawn snapshot, and the tiles drawn."""
    page = context.new_page()
    try:
        page.goto(url)
        page.wait_for_selector("body[data-ready]", timeout=60000)
        ms = page.evaluate("performance.getEntriesByName('edgefleet-first-render')[0].startTime")
        tiles = page.evaluate("document.querySelectorAll('button.tile').length")
        return float(ms) / 1000, int(tiles)
    finally:
        page.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--changes", type=int, default=20, help="update round trips measured per view")
    parser.add_argument("--screenshots", type=Path, default=None, help="save the page at this size into DIR")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="edgefleet-dashboard-bench-"))
    cp = controlplane.start(root / "controlplane")
    namespace = "dashboard-load"
    results: dict[str, Any] = {}
    try:
        cp.kubectl("create", "namespace", namespace)
        scene = fleetscene.Scene(namespace, args.devices)
        writer = Writer(cp)
        began = time.monotonic()
        writer.call(fleetscene.populate(writer.client, scene))
        results["write the fleet into the API server (s)"] = time.monotonic() - began
        console.print(
            f"{args.devices} EdgeDevices written in {results['write the fleet into the API server (s)']:.1f} s"
        )

        began = time.monotonic()
        listing = cp.kubectl("-n", namespace, "get", "edgedevices")
        results["baseline: kubectl get edgedevices (s)"] = time.monotonic() - began
        results["baseline: rows to read"] = len(listing.stdout.splitlines()) - 1

        with dashboard(cp, namespace, root / "dashboard.log") as (url, started, pid), browser.chromium() as context:
            results["dashboard start: synced and serving (s)"] = started
            folded = [first_render(context, url) for _ in range(RENDERS)]
            every = [first_render(context, url + "?lines=*") for _ in range(RENDERS)]
            results["first render, lines folded: median / max (s)"] = (
                statistics.median(t for t, _ in folded),
                max(t for t, _ in folded),
            )
            results["first render, every tile: median / max (s)"] = (
                statistics.median(t for t, _ in every),
                max(t for t, _ in every),
            )
            results["tiles drawn (folded / every)"] = (folded[0][1], every[0][1])

            canaries = [i for i in range(args.devices) if fleetscene.state_of(i) == "canary"]
            key = line_of(scene, canaries[0])
            in_line = [i for i in canaries if line_of(scene, i) == key]
            page = context.new_page()
            page.goto(f"{url}?lines={key}")
            page.wait_for_selector("body[data-ready]")
            shown: list[float] = []
            for n in range(args.changes):
                i = in_line[n % len(in_line)]
                state = "rolledBack" if (n // len(in_line)) % 2 == 0 else "canary"
                page.evaluate(OBSERVE, f"{namespace}/{scene.name(i)}")
                written = time.time() * 1000
                writer.call(fleetscene.set_state(writer.client, scene, i, state))
                shown.append((float(page.evaluate("window.__seen")) - written) / 1000)
            results["device change visible, line open: p50 / p95 / max (s)"] = (
                statistics.median(shown),
                percentile(shown, 0.95),
                max(shown),
            )
            other = next(i for i in canaries if line_of(scene, i) != key)
            other_key = line_of(scene, other)
            counted: list[float] = []
            for n in range(args.changes):
                state = "rolledBack" if n % 2 == 0 else "canary"
                page.evaluate(OBSERVE_COUNT, other_key)
                written = time.time() * 1000
                writer.call(fleetscene.set_state(writer.client, scene, other, state))
                counted.append((float(page.evaluate("window.__seen")) - written) / 1000)
            results["device change visible, line folded (counts): p50 / p95 / max (s)"] = (
                statistics.median(counted),
                percentile(counted, 0.95),
                max(counted),
            )
            results["dashboard server RSS (MiB)"] = rss_mib(pid)
            if args.screenshots is not None:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                page.goto(url)
                page.wait_for_selector("body[data-ready]")
                page.locator(f'div.line[data-line="{key}"] .line-head').click()
                page.wait_for_selector(f'div.line[data-line="{key}"] button.tile')
                page.wait_for_timeout(500)
                page.screenshot(path=str(args.screenshots / f"dashboard-{args.devices}-devices.png"))
            page.close()
        writer.close()
    finally:
        cp.stop()
    report(results, args)
    return 0


async def _connect(cp: controlplane.ControlPlane) -> kube.Client:
    return kube.connect(kube.from_kubeconfig(cp.kubeconfig))


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return " / ".join(_fmt(v) for v in value)
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return str(value)


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    table = Table(title=f"edgefleet dashboard over {args.devices} EdgeDevices (load average {os.getloadavg()[0]:.1f})")
    table.add_column("measured")
    table.add_column("value", justify="right")
    table.add_column("target / baseline")
    notes = {
        "first render, lines folded: median / max (s)": f"< {TARGET_FIRST_RENDER_S:.0f} s",
        "first render, every tile: median / max (s)": f"< {TARGET_FIRST_RENDER_S:.0f} s",
        "device change visible, line open: p50 / p95 / max (s)": f"< {TARGET_CHANGE_S:.0f} s",
        "device change visible, line folded (counts): p50 / p95 / max (s)": f"< {TARGET_CHANGE_S:.0f} s",
        "baseline: kubectl get edgedevices (s)": "one snapshot; a change needs another run",
    }
    for what, value in results.items():
        table.add_row(what, _fmt(value), notes.get(what, ""))
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
