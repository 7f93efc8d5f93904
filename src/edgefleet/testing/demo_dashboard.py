"""The demo's dashboard: the real ``edgefleet dashboard`` command, up for the whole story, and screenshots of it.

:class:`Dashboard` starts the command on a free loopback port of the demo's control plane (its URL is printed, so the
person watching can open it), and saves screenshots into the demo's output directory at the moments the story asks
for (:meth:`Dashboard.when`: once, the first time a condition on the rollout's status and devices holds). Screenshots
come from headless Chromium (:mod:`edgefleet.testing.browser`); without Chromium the demo still runs and says so.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgefleet.testing import browser, controlplane

Moment = Callable[[dict[str, Any], dict[str, dict[str, Any]]], bool]
"""(the ModelDeployment's status, each device's status entry) -> whether to take the screenshot now."""


class Dashboard:
    """``edgefleet dashboard -n NAMESPACE`` on the demo's control plane."""

    def __init__(self, cp: controlplane.ControlPlane, namespace: str, output: Path, log: Path) -> None:
        self.cp, self.namespace, self.output, self.log = cp, namespace, output, log
        self.url: str | None = None
        self.saved: list[Path] = []
        self.missing: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._taken: set[str] = set()
        self._thread: threading.Thread | None = None
        self._requests: queue.Queue[tuple[Path, threading.Event] | None] = queue.Queue()
        self._armed: dict[str, Path] = {}

    def start(self) -> str:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(controlplane.REPO / "src"), os.environ.get("PYTHONPATH", "")]),
        }
        port = controlplane.free_port()
        args = ["dashboard", "--kubeconfig", str(self.cp.kubeconfig), "-n", self.namespace, "--port", str(port)]
        with self.log.open("ab") as err:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "edgefleet.cli.main", *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().decode()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if not found:
            self.stop()
            raise RuntimeError(f"edgefleet dashboard did not start: {line.strip()}; see {self.log}")
        self.url = found.group(0)
        return self.url

    def open(self) -> None:
        """Open the page in headless Chromium once, and keep it open: a screenshot is then a tenth of a second, quick
        enough for the few seconds in which canaries have rolled back and the operator has not yet aborted. The
        browser lives in a thread of its own: Playwright's sync API keeps an event loop running in the thread that
        uses it, and the demo runs ``edgefleet`` commands (``asyncio.run``) in its main thread."""
        if self.url is None or self._thread is not None or self.missing is not None:
            return
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve_screenshots, args=(self.url, ready), daemon=True)
        self._thread.start()
        ready.wait(timeout=60)

    def _serve_screenshots(self, url: str, ready: threading.Event) -> None:
        try:
            with browser.chromium(width=1600, height=1000) as context:
                page = context.new_page()
                page.goto(url)
                page.wait_for_selector("body[data-ready]", timeout=30000)
                ready.set()
                while True:
                    try:
                        request = self._requests.get(timeout=0.1)
                    except queue.Empty:
                        self._check_armed(page)
                        continue
                    if request is None:
                        break
                    path, done = request
                    page.wait_for_timeout(300)  # the push that the demo's own poll just saw reaches the page
                    page.screenshot(path=str(path), full_page=True)
                    done.set()
        except browser.BrowserMissing as exc:
            self.missing = str(exc)
        except Exception as exc:  # a screenshot is a bonus: the demo goes on without it
            self.missing = f"the browser failed: {exc}"
        finally:
            ready.set()

    def arm(self, name: str, selector: str) -> None:
        """Screenshot ``name`` the moment the page shows ``selector`` (looked for every 0.1 s by the browser's
        thread): what the page shows for a second or two, such as canaries that rolled back before the abort."""
        self.open()
        self._armed[selector] = self.output / name

    def _check_armed(self, page: Any) -> None:
        for selector, path in list(self._armed.items()):
            if page.query_selector(selector) is not None:
                del self._armed[selector]
                page.wait_for_timeout(150)  # let the rest of the same push draw
                self.output.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(path), full_page=True)
                self.saved.append(path)

    def screenshot(self, name: str) -> Path | None:
        """Save the live page as ``<output>/<name>``; None (and :attr:`missing` says why) without Chromium."""
        self.open()
        if self._thread is None or not self._thread.is_alive():
            return None
        self.output.mkdir(parents=True, exist_ok=True)
        path = self.output / name
        done = threading.Event()
        self._requests.put((path, done))
        if not done.wait(timeout=30):
            return None
        self.saved.append(path)
        return path

    def when(self, name: str, moment: Moment) -> Callable[[dict[str, Any], dict[str, dict[str, Any]]], None]:
        """A callback for the demo's live view: screenshot ``name`` once, the first time ``moment`` holds."""

        def check(status: dict[str, Any], devices: dict[str, dict[str, Any]]) -> None:
            if name not in self._taken and moment(status, devices):
                self._taken.add(name)
                self.screenshot(name)

        return check

    def stop(self) -> None:
        if self._thread is not None:
            self._requests.put(None)
            self._thread.join(timeout=20)
            self._thread = None
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def canary_out(version: str) -> Moment:
    """Mid-rollout: ``version`` is the canary and some, not all, devices run it."""

    def moment(status: dict[str, Any], devices: dict[str, dict[str, Any]]) -> bool:
        on = sum(e.get("activeVersion") == version for e in devices.values())
        return str(status.get("canaryRevision") or "").startswith(version) and 0 < on < len(devices)

    return moment


ROLLED_BACK_TILE = 'button.tile[data-state="rolledBack"]'
"""A device that rolled its desired version back on its own, as the page shows it."""


__all__ = ["ROLLED_BACK_TILE", "Dashboard", "Moment", "canary_out"]
