"""Operator benchmarks: the artifact server against a plain static file server, and planning cost.

Run: ``PYTHONPATH=src python benchmarks/bench_operator.py [--size-mb 64] [--repeat 3]``

1. Artifact download (what every device does): a full download and a download resumed at 50 % after a dropped
   connection, from the operator's store (aiohttp, Range + ETag) and from ``python -m http.server`` (the static server a
   user would otherwise put in front of a directory; it ignores Range, so a resumed download sends everything again).
2. Planning: one ``planner.plan`` over fleets of 100 to 10 000 devices during a canary step; the operator runs it on
   every reconcile, so it must stay far below the resync interval.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.server
import os
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgefleet.adapters import store
from edgefleet.testing import rollout


def fetch(url: str, start: int = 0, stop_after: int | None = None) -> tuple[int, float]:
    """Download ``url`` from byte ``start``; returns (bytes received, seconds)."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    began = time.perf_counter()
    received = 0
    with urllib.request.urlopen(request, timeout=60) as response:
        while chunk := response.read(1 << 20):
            received += len(chunk)
            if stop_after is not None and received >= stop_after:
                break
    return received, time.perf_counter() - began


def static_server(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def bench_download(size_mb: int, repeat: int) -> Table:
    data = os.urandom(size_mb << 20)
    table = Table(title=f"Artifact download, {size_mb} MiB bundle, 127.0.0.1, median of {repeat}")
    for column in ("server", "full download", "MiB/s", "resume at 50 %: bytes sent", "resume time"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        local = store.LocalStore(Path(tmp) / "store", "http://placeholder")
        stored = local.put_sync(data)
        loop = asyncio.new_event_loop()
        runner = loop.run_until_complete(store.serve(local, "127.0.0.1", 0))
        threading.Thread(target=loop.run_forever, daemon=True).start()
        ours = f"http://127.0.0.1:{store.bound_port(runner)}/artifacts/sha256/{stored.digest[7:]}"
        plain_dir = Path(tmp) / "plain"
        plain_dir.mkdir()
        (plain_dir / "bundle.tar").write_bytes(data)
        server, base = static_server(plain_dir)
        try:
            for name, url in (
                ("edgefleet store (aiohttp)", ours),
                ("python -m http.server", f"{base}/bundle.tar"),
            ):
                full = [fetch(url) for _ in range(repeat)]
                seconds = statistics.median(t for _, t in full)
                resumed = [fetch(url, start=len(data) // 2) for _ in range(repeat)]
                sent = statistics.median(n for n, _ in resumed)
                table.add_row(
                    name,
                    f"{seconds * 1000:.0f} ms",
                    f"{size_mb / seconds:.0f}",
                    f"{sent / (1 << 20):.1f} MiB ({sent / len(data):.0%})",
                    f"{statistics.median(t for _, t in resumed) * 1000:.0f} ms",
                )
        finally:
            server.shutdown()
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
    return table


def bench_planner(repeat: int) -> Table:
    table = Table(title=f"planner.plan during a 10 % canary step, median of {repeat}")
    for column in ("devices", "plan time", "per device", "devices changed"):
        table.add_column(column, justify="right")
    for n in (100, 1000, 10000):
        fleet = rollout.Fleet.new(rollout.spec(max_unavailable="100%"), rollout.layout(n, sites=5, lines=4))
        fleet.run(rounds=3)
        fleet.set_spec(rollout.spec(version="2.0.0", max_unavailable="100%"))
        timings = []
        changed = 0
        for _ in range(repeat):
            began = time.perf_counter()
            p = fleet.plan()
            timings.append(time.perf_counter() - began)
            changed = len(p.changes)
        median = statistics.median(timings)
        table.add_row(str(n), f"{median * 1000:.1f} ms", f"{median / n * 1e6:.1f} µs", str(changed))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    console = Console()
    console.print(bench_download(args.size_mb, args.repeat))
    console.print(bench_planner(args.repeat))


if __name__ == "__main__":
    main()
