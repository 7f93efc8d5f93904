"""Headless Chromium for the dashboard's end-to-end tests, its benchmark and the demo's screenshots.

The browser is Debian's ``chromium`` (``hack/install-system-packages.sh`` installs it), driven by Playwright from PyPI
pointed at that binary: Playwright's own browser download is never used. Every launch gets a new, empty profile
directory and the flags that keep Chromium off the network (no background networking, component updates, sync or
QUIC), so a test run sends nothing anywhere but to the pages it opens on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import BrowserContext, sync_playwright

ENV = "EDGEFLEET_CHROMIUM"
DEFAULT = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class BrowserMissing(RuntimeError):
    pass


def executable() -> Path:
    """The Chromium binary: ``$EDGEFLEET_CHROMIUM``, else ``/usr/bin/chromium``; raises BrowserMissing."""
    path = Path(os.environ.get(ENV) or DEFAULT)
    if not path.exists():
        found = shutil.which("chromium")
        if found is None:
            raise BrowserMissing(
                f"{path} not found: install Debian's chromium with `bash hack/install-system-packages.sh` "
                f"(or set {ENV} to a Chromium binary)"
            )
        path = Path(found)
    return path


@contextlib.contextmanager
def chromium(width: int = 1600, height: int = 1000) -> Iterator[BrowserContext]:
    """A headless Chromium context with a fresh profile, closed (and its profile removed) on exit."""
    binary = executable()
    profile = Path(tempfile.mkdtemp(prefix="edgefleet-chromium-"))
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(profile),
                executable_path=str(binary),
                headless=True,
                args=list(FLAGS),
                viewport={"width": width, "height": height},
                device_scale_factor=1,
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


__all__ = ["DEFAULT", "ENV", "FLAGS", "BrowserMissing", "chromium", "executable"]
