"""Launching a simulated fleet: K worker processes (:mod:`edgefleet.testing.fleetsim.worker`), their statistics, a clean
stop.

    with fleet.Fleet(spec).start() as sim:
        sim.wait(lambda s: s.registered == spec.devices, timeout=120)
        ...
        print(sim.snapshot().count("1.0.0"))

Each worker runs in its own process group and is stopped with SIGTERM (its agents are cancelled, connections
closed, inference servers closed and their sockets removed), then SIGKILL after a grace period; the state root is
removed afterwards when the fleet created it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from edgefleet.testing.fleetsim import layout

SRC = Path(__file__).resolve().parents[3]


class FleetError(RuntimeError):
    """The fleet did not reach a state in time, or a worker died."""


def temp_root() -> Path:
    """A fresh state root under the system temp directory."""
    return Path(tempfile.mkdtemp(prefix="edgefleet-fleetsim-"))


class Fleet:
    """The worker processes of one :class:`~edgefleet.testing.fleetsim.layout.FleetSpec`."""

    def __init__(self, spec: layout.FleetSpec, *, remove_root: bool = True) -> None:
        self.spec = spec
        self.root = Path(spec.root)
        self.remove_root = remove_root
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stats_files: list[Path] = []
        self.powered_off: set[int] = set()
        """Workers whose power was cut on purpose (:meth:`power_off_offline`)."""

    def start(self) -> Fleet:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.spec.sockets_dir is not None:
            Path(self.spec.sockets_dir).mkdir(parents=True, exist_ok=True)
        spec_file = self.root / "fleet.json"
        spec_file.write_text(self.spec.to_json())
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)}
        try:
            for k, shard in enumerate(layout.worker_shards(self.spec)):
                stats = self.root / f"worker-{k}.json"
                self.stats_files.append(stats)
                with (self.root / f"worker-{k}.log").open("ab") as log:
                    args = ["--spec", str(spec_file), "--first", str(shard.start), "--count", str(len(shard))]
                    args += ["--stats", str(stats)]
                    command = [sys.executable, "-m", "edgefleet.testing.fleetsim", "--log-level", self.spec.log_level]
                    self.procs.append(
                        subprocess.Popen(
                            [*command, "worker", *args],
                            env=env,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def snapshot(self) -> layout.Snapshot:
        """The fleet's statistics now (from the workers' files, at most a second old)."""
        return layout.combine(layout.read_stats(self.stats_files), at=time.monotonic())

    def power_off_offline(self) -> None:
        """Cut the power of the ``offline`` devices at once: SIGKILL their worker process (no agent stops cleanly;
        their state directories stay as the cut left them)."""
        if not self.spec.offline:
            return
        k = len(self.procs) - 1
        proc = self.procs[k]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.powered_off.add(k)

    def check(self) -> None:
        """Raise :class:`FleetError` with the log tail when a worker exited (not by :meth:`power_off_offline`)."""
        for k, proc in enumerate(self.procs):
            if proc.poll() is not None and k not in self.powered_off:
                tail = (self.root / f"worker-{k}.log").read_text(errors="replace")[-3000:]
                raise FleetError(f"fleet worker {k} exited with {proc.returncode}; its log ends:\n{tail}")

    def wait(
        self, done: Callable[[layout.Snapshot], bool], timeout: float, what: str = "the fleet", poll: float = 0.25
    ) -> layout.Snapshot:
        """Poll snapshots until ``done``; raises :class:`FleetError` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        snap = self.snapshot()
        while time.monotonic() < deadline:
            snap = self.snapshot()
            if done(snap):
                return snap
            self.check()
            time.sleep(poll)
        raise FleetError(
            f"timed out after {timeout:.0f}s waiting for {what}; last: started={snap.started} "
            f"registered={snap.registered} reported={dict(sorted(snap.reported.items()))}; "
            f"worker logs are in {self.root}"
        )

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM every worker, SIGKILL what is left after ``grace``; remove the state root."""
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.remove_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


__all__ = ["Fleet", "FleetError", "temp_root"]
