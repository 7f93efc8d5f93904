"""A device whose disk is full: the install of a new version fails with the cause in status, the verified active
version keeps serving, the agent keeps running, and the install succeeds once space is freed.

The state directory is a real 1 MiB tmpfs (the test needs root to mount it, as CI has; elsewhere it is skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.edge_reconciler import state
from edgefleet.testing.agent_harness import Harness, Traffic, desired, eventually

pytestmark = pytest.mark.chaos


@contextlib.contextmanager
def small_disk(path: Path, size: str = "1m") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write zeros into ``directory`` until the file system answers ENOSPC."""
    filler = directory / "filler"
    with pytest.raises(OSError), filler.open("wb") as handle:
        while True:
            handle.write(b"\0" * 4096)
            handle.flush()
    return filler


def test_write_atomic_on_a_full_disk_keeps_the_old_file_and_frees_its_temporary(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "64k") as disk:
        target = disk / "journal.json"
        state.write_atomic(target, b"old")
        with pytest.raises(OSError):
            state.write_atomic(target, b"x" * 256 * 1024)
        assert target.read_bytes() == b"old"
        assert sorted(p.name for p in disk.iterdir()) == ["journal.json"]


async def test_full_disk_fails_the_install_and_keeps_serving(harness: Harness) -> None:
    v1, url1 = harness.publish("demo", "1.0.0")
    v2, url2 = harness.publish("demo", "2.0.0")
    with small_disk(harness.root / "state"):
        async with harness.running() as agent:
            harness.want(desired(v1, url1))
            await eventually(lambda: harness.served_version() == "1.0.0")
            filler = fill(harness.root / "state")
            harness.want(desired(v2, url2))
            failed = await eventually(
                lambda: harness.model_status() if harness.model_status().get("state") == "Failed" else None
            )
            assert "No space left on device" in failed["message"] and "StorageError" in failed["message"], failed
            assert failed["activeVersion"] == "1.0.0"
            await asyncio.sleep(0.5)
            assert harness.served_version() == "1.0.0"
            assert agent.registry.get("demo") is not None
            filler.unlink()  # space comes back: the retry installs 2.0.0
            await eventually(lambda: harness.served_version() == "2.0.0", timeout=30)


async def test_full_disk_during_probation_keeps_the_agent_running(harness: Harness) -> None:
    v1, url1 = harness.publish("demo", "1.0.0")
    v2, url2 = harness.publish("demo", "2.0.0")
    with small_disk(harness.root / "state"):
        async with harness.running():
            harness.want(desired(v1, url1))
            await eventually(lambda: harness.served_version() == "1.0.0")
            harness.want(desired(v2, url2))
            await eventually(lambda: harness.served_version() == "2.0.0")
            filler = fill(harness.root / "state")  # the probation verdict cannot be written down
            traffic = Traffic(harness, positive=True).start()
            try:
                confirmed = await eventually(
                    lambda: "passed probation" in (harness.model_status().get("message") or ""), timeout=30
                )
                assert confirmed and harness.model_status()["activeVersion"] == "2.0.0"
                # The next version is not held back by the unwritten verdict: it fails on the full disk and says so.
                v3, url3 = harness.publish("demo", "3.0.0")
                harness.want(desired(v3, url3))
                failed = await eventually(lambda: harness.model_status().get("state") == "Failed")
                assert failed and "No space left" in harness.model_status()["message"]
                assert harness.served_version() == "2.0.0"
                filler.unlink()
                await eventually(lambda: harness.served_version() == "3.0.0", timeout=30)
            finally:
                await traffic.stop()
