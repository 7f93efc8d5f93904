"""``edgefleet dashboard`` in headless Chromium against a real rollout in progress.

What runs: the real API server, the real operator process, six real ``edgefleet-agent`` processes, two on each of three
lines in two plants (each with its own state directory, A/B slots, inference server on a UNIX socket and a 5 s heartbeat
Lease), inference traffic to every agent, the real ``edgefleet dashboard`` command, and Debian's Chromium driven by
Playwright. ``adder`` 1.0.0 is rolled out to all six; then 2.0.0 with ``setWeight 50 -> pause -> setWeight 100``: three
canaries switch to it, and the first one seen serving it gets traffic that 2.0.0 fails on, so that agent rolls itself
back on its own (a real probation verdict). The rollout stays at its first step (one failure of three is within
``successThreshold: 0.5``), which is the scene the tests look at: canary, stable and rolled-back tiles. One stable agent
is then killed with SIGKILL: its Lease stops being renewed and its tile turns offline on the open page.

A seventh EdgeDevice, written by the test, carries HTML and script in its annotation and status message, and an Event
about the deployment does too: the page must show them as text, run nothing and request nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from playwright.sync_api import Page

from edgefleet.adapters import bundle, dashboard, kube
from edgefleet.core import errors
from edgefleet.testing import browser, controlplane, models, operatorproc
from edgefleet.testing.adder import manifest, md_status, wait_for
from edgefleet.testing.operatorproc import OperatorProcess

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]
REPO = controlplane.REPO
# Two devices per line: the planner keeps one device of every line on stable while the canary is out (its line
# keepers), so a line of one device never gets a canary.
PLACES = (("plant-north", "line-1"), ("plant-north", "line-2"), ("plant-south", "line-1"))
AGENTS = 6
HEALTH = {"latencyP95Ms": 500.0, "maxErrorRate": 0.05, "minSamples": 10, "windowSeconds": 8}
STEPS = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
GOOD = {"inputs": {"x": [[0.5, 1.0, -1.0, 2.0]]}}
# finite inputs 2.0.0 turns into Inf (3e38 + 1e38 overflows float32): a silent model failure, counted against it
# (a wrong shape would be the client's error, which counts against no model)
BAD = {"inputs": {"x": [[3.0e38, 0.5, 1.0, -1.0]]}}
HOSTILE_NAME = "visitor-1"


class Beacon:
    """An HTTP server on 127.0.0.1 that counts requests: anything the hostile markup would load points here."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        beacon = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                beacon.hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Beacon:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def hostile(port: int) -> str:
    return (
        f'<script>window.__pwned = "script"</script><img src="http://127.0.0.1:{port}/img.png" '
        f"onerror=\"window.__pwned = 'img'\"><svg onload=\"window.__pwned = 'svg'\"></svg>"
        f'<iframe src="http://127.0.0.1:{port}/frame"></iframe><b>bold?</b> &amp; &lt;entity&gt; '
        f'<script src="http://127.0.0.1:{port}/s.js"></script>'
    )


class Traffic:
    """Inference requests to every agent; the first agent seen serving ``canary`` gets requests it fails on."""

    def __init__(self, sockets: dict[str, Path], canary: str) -> None:
        self.sockets, self.canary = sockets, canary
        self.victim: str | None = None
        self.answered = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _one(self, name: str, socket: Path) -> None:
        version = None
        n = 0
        while not self.stop.is_set():
            try:
                async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket))) as http:
                    while not self.stop.is_set():
                        bad = self.victim == name and version == self.canary
                        async with http.post("http://edge/v1/models/adder:predict", json=BAD if bad else GOOD) as r:
                            await r.read()
                            self.answered += r.status == 200
                            version = r.headers.get("X-Edgefleet-Model-Version") or version
                        if bad or n % 5 == 0:
                            async with http.get("http://edge/v1/models") as r:
                                served = (await r.json()).get("models", [])
                            version = next((m["version"] for m in served if m["name"] == "adder"), None)
                        with self.lock:
                            if self.victim is None and version == self.canary:
                                self.victim = name
                        n += 1
                        await asyncio.sleep(0.03)
            except (aiohttp.ClientError, OSError, ValueError):
                await asyncio.sleep(0.2)  # not serving yet, or restarting

    async def _run(self) -> None:
        await asyncio.gather(*(self._one(n, s) for n, s in self.sockets.items()))


def agent_config(root: Path, name: str, namespace: str, kubeconfig: Path, i: int) -> Path:
    config = root / f"{name}.yaml"
    labels = {
        "app": "adder",
        "edgefleet.io/site": PLACES[i // 2][0],
        "edgefleet.io/line": PLACES[i // 2][1],
        "edgefleet.io/hardware-class": "x86",
    }
    body = {
        "deviceName": name,
        "namespace": namespace,
        "labels": labels,
        "stateDir": str(root / name),
        "trustKeys": [str(root / "trust.pem")],
        "api": {"mode": "kubeconfig", "kubeconfig": str(kubeconfig)},
        "server": {"unixSocket": str(root / f"{name}.sock")},
        "leaseDurationSeconds": 5,
        "retryInitialSeconds": 0.1,
        "retryMaxSeconds": 1.0,
        "statusIntervalSeconds": 0.5,
        "healthTickSeconds": 0.02,
    }
    config.write_text(yaml.safe_dump(body))
    return config


def deployment(namespace: str, url: str, version: str, root: Path) -> str:
    body = json.loads(manifest(namespace, url, version, root / "models", STEPS))
    body["spec"]["health"] = HEALTH
    body["spec"]["rollout"].update({"maxUnavailable": "50%", "successThreshold": 0.5, "progressDeadlineSeconds": 1800})
    return json.dumps(body)


def devices(cp: controlplane.ControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    out = json.loads(cp.kubectl("-n", namespace, "get", "edgedevices", "-o", "json").stdout)
    return {d["metadata"]["name"]: d for d in out["items"]}


def entry(device: dict[str, Any], key: str) -> dict[str, Any]:
    models_ = (device.get(key) or {}).get("models") or [{}]
    return models_[0]  # type: ignore[no-any-return]


@dataclasses.dataclass
class LiveRollout:
    cp: controlplane.ControlPlane
    namespace: str
    url: str
    root: Path
    agents: dict[str, subprocess.Popen[bytes]]
    traffic: Traffic
    beacon: Beacon
    canaries: list[str]
    victim: str
    stable: list[str]
    message: str


async def write_hostile(cp: controlplane.ControlPlane, namespace: str, text: str) -> None:
    """A device of no deployment with HTML in its annotation and status, an online Lease, and an Event about the
    rollout whose message is HTML too."""
    client = kube.connect(kube.from_kubeconfig(cp.kubeconfig))
    try:
        body = {
            "apiVersion": "edgefleet.io/v1alpha1",
            "kind": "EdgeDevice",
            "metadata": {
                "name": HOSTILE_NAME,
                "labels": {"app": "visitor", "edgefleet.io/site": "plant-north", "edgefleet.io/line": "line-1"},
                "annotations": {"edgefleet.io/note": text},
            },
            "spec": {"models": []},
        }
        await client.create(kube.EDGEDEVICES, namespace, body)
        status = {"status": {"models": [{"name": "inspector", "state": "Failed", "message": text}]}}
        await client.merge_patch(kube.EDGEDEVICES, namespace, HOSTILE_NAME, status, "status")
        await client.renew_lease(namespace, HOSTILE_NAME, HOSTILE_NAME, 3600, dt.datetime.now(dt.UTC))
        md = await client.get(kube.MODELDEPLOYMENTS, namespace, "adder")
        await client.record_event(md, "Warning", "HostileMessage", text, dt.datetime.now(dt.UTC))
    finally:
        await client.close()


async def label(cp: controlplane.ControlPlane, namespace: str, value: str) -> None:
    client = kube.connect(kube.from_kubeconfig(cp.kubeconfig))
    try:
        await client.merge_patch(kube.EDGEDEVICES, namespace, HOSTILE_NAME, {"metadata": {"labels": {"note": value}}})
    finally:
        await client.close()


@pytest.fixture(scope="module")
def live(control_plane: controlplane.ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRollout]:
    cp = control_plane
    namespace = f"dashboard-{uuid.uuid4().hex[:8]}"
    cp.kubectl("create", "namespace", namespace)
    root = tmp_path_factory.mktemp("dashboard-browser")
    store = root / "models"
    store.mkdir()
    for version, offset in (("1.0.0", 1.0), ("2.0.0", 1.0e38)):
        (store / f"{version}.onnx").write_bytes(models.adder(offset))
    (store / "eval.npz").write_bytes(models.evaluation_set(4))
    key = bundle.generate_key()
    (root / "trust.pem").write_bytes(bundle.public_key_pem(key.public_key()))
    operatorproc.create_signing_secret(cp, namespace, key)
    pythonpath = os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
    agents: dict[str, subprocess.Popen[bytes]] = {}
    log = root / "operator.log"
    with models.served(store) as url, Beacon() as beacon:
        operator = OperatorProcess(
            operatorproc.operator_env(cp, namespace, root / "store", controlplane.free_port()), namespace, log
        )
        operator.start()
        traffic = Traffic({f"agent-{i}": root / f"agent-{i}.sock" for i in range(AGENTS)}, "2.0.0")
        try:
            for i in range(AGENTS):
                name = f"agent-{i}"
                config = agent_config(root, name, namespace, cp.kubeconfig, i)
                with (root / f"{name}.log").open("ab") as out:
                    agents[name] = subprocess.Popen(
                        [sys.executable, "-m", "edgefleet.edge_reconciler.main", "--config", str(config)],
                        env={**os.environ, "PYTHONPATH": pythonpath},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
            registered = lambda: {"n": len(devices(cp, namespace))}  # noqa: E731
            wait_for("agents registered", registered, lambda s: s["n"] == AGENTS, 90, log)
            traffic.thread.start()
            cp.kubectl("apply", "-f", "-", input=deployment(namespace, url, "1.0.0", root))
            probe = lambda: md_status(cp, namespace)  # noqa: E731
            wait_for("1.0.0 on every agent", probe, lambda s: s.get("phase") == "Healthy", 180, log)
            cp.kubectl("apply", "-f", "-", input=deployment(namespace, url, "2.0.0", root))
            status = wait_for(
                "2.0.0 canaries out",
                lambda: md_status(cp, namespace),
                lambda s: str(s.get("canaryRevision", "")).startswith("2.0.0"),
                180,
                log,
            )
            canary = status["canaryRevision"]

            def scene() -> dict[str, Any]:
                ds = devices(cp, namespace)
                chosen = sorted(n for n, d in ds.items() if entry(d, "spec").get("revision") == canary)
                reports = {n: entry(ds[n], "status") for n in chosen}
                return {
                    "canaries": chosen,
                    "rolledBack": sorted(n for n, r in reports.items() if r.get("state") == "RolledBack"),
                    "onCanary": sorted(
                        n for n, r in reports.items() if (r.get("activeRevision"), r.get("state")) == (canary, "Active")
                    ),
                }

            now = wait_for(
                "one canary rolled back on its own, the others on 2.0.0",
                scene,
                lambda s: len(s["canaries"]) == AGENTS // 2 and len(s["rolledBack"]) == 1 and len(s["onCanary"]) == 2,
                180,
                log,
            )
            assert now["rolledBack"] == [traffic.victim], (now, traffic.victim)
            # still rolling out: at step 1, or at the pause when the three switched before the victim's verdict
            assert md_status(cp, namespace).get("phase") in ("Progressing", "Paused")
            message = hostile(beacon.port)
            asyncio.run(write_hostile(cp, namespace, message))
            yield LiveRollout(
                cp,
                namespace,
                url,
                root,
                agents,
                traffic,
                beacon,
                now["canaries"],
                now["rolledBack"][0],
                sorted(set(agents) - set(now["canaries"])),
                message,
            )
        finally:
            traffic.stop.set()
            controlplane.stop_all(agents.values(), grace=10)
            traffic.thread.join(timeout=10)
            operator.stop()


@contextlib.contextmanager
def served_dashboard(cp: controlplane.ControlPlane, namespace: str, root: Path) -> Iterator[str]:
    """The real ``edgefleet dashboard`` command; yields its URL."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    args = ["dashboard", "--kubeconfig", str(cp.kubeconfig), "-n", namespace, "--port", "0"]
    with (root / "dashboard.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgefleet.cli.main", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert found, f"{line}\n{(root / 'dashboard.log').read_text()}"
        yield found.group(0)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]


def wait_js(page: Page, expression: str, timeout: float = 15.0) -> None:
    """Poll ``expression`` until it is true. (Playwright's wait_for_function compiles its predicate with eval, which
    the dashboard's Content-Security-Policy rightly forbids; evaluate goes through the DevTools protocol.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        time.sleep(0.1)


def tile(page: Page, namespace: str, name: str) -> Any:
    return page.locator(f'button.tile[data-id="{namespace}/{name}"]')


def save(page: Page, root: Path, name: str) -> None:
    """Screenshots to the test's directory, and to $EDGEFLEET_SCREENSHOTS when set (how docs/ got its pictures)."""
    page.screenshot(path=str(root / name))
    target = os.environ.get("EDGEFLEET_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(root / name, Path(target) / name)


def test_the_map_shows_the_rollout_and_follows_it_live(live: LiveRollout) -> None:
    ns = live.namespace
    with served_dashboard(live.cp, ns, live.root) as url, browser.chromium() as context:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("body[data-ready]")
        for name in live.canaries:
            expected = "rolledBack" if name == live.victim else "canary"
            page.wait_for_selector(f'button.tile[data-id="{ns}/{name}"][data-state="{expected}"]', timeout=15000)
        for name in live.stable:
            assert tile(page, ns, name).get_attribute("data-state") == "stable", name
        victim = tile(page, ns, live.victim)
        assert "rolled back version 2.0.0 to 1.0.0" in (victim.get_attribute("title") or "")
        assert "NonFiniteOutput" in (victim.get_attribute("title") or "")
        # every tile sits in its own plant and line
        for i in range(AGENTS):
            line = page.locator(f'div.line[data-line="{PLACES[i // 2][0]}/{PLACES[i // 2][1]}"]')
            assert line.locator(f'button.tile[data-id="{ns}/agent-{i}"]').count() == 1
        card = page.locator("#deployment-list .card").first
        status = md_status(live.cp, ns)
        step = status["currentStepIndex"]
        assert card.locator(".step.current").inner_text() == ("1. setWeight 50%", "2. pause until promoted")[step]
        assert card.locator(".phase").inner_text() == status["phase"]
        assert status["canaryRevision"] in card.inner_text()
        assert page.locator('#legend span[data-state="canary"]').inner_text() == "canary 2"
        save(page, live.root, "dashboard-rollout.png")

        # one stable device loses power: its Lease is not renewed, and the open page shows it offline
        page.evaluate("window.__sameDocument = 'yes'")
        victim_off = live.stable[0]
        os.killpg(live.agents[victim_off].pid, signal.SIGKILL)
        live.agents[victim_off].wait()
        page.wait_for_selector(f'button.tile[data-id="{ns}/{victim_off}"][data-state="offline"]', timeout=30000)
        assert page.evaluate("window.__sameDocument") == "yes"  # no reload
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        assert page.locator('#legend span[data-state="offline"]').inner_text() == "offline 1"
        assert "no heartbeat since" in (tile(page, ns, victim_off).get_attribute("title") or "")

        # the device page: models, health, transitions, reachability
        tile(page, ns, victim_off).click()
        page.wait_for_selector("#device-reason")
        drawer = page.locator("#device")
        assert "offline" in drawer.inner_text() and "Lease duration" in drawer.inner_text()
        tile(page, ns, live.victim).click()
        wait_js(
            page,
            "document.querySelector('#device-name') && document.querySelector('#device-name').textContent === "
            + json.dumps(live.victim)
            + " && document.querySelector('#device-body .model')",
        )
        text = drawer.inner_text()
        assert "rolled back" in text and "RolledBack" in text and "1.0.0" in text
        save(page, live.root, "dashboard-device.png")
        assert not errors, errors


def test_cluster_html_renders_as_text_and_no_script_runs(live: LiveRollout) -> None:
    ns = live.namespace
    # Label values cannot carry markup at all: the API server refuses them before any page could see them.
    with pytest.raises(errors.InvalidSpecError, match="Invalid value"):
        asyncio.run(label(live.cp, ns, "<script>alert(1)</script>"))
    with served_dashboard(live.cp, ns, live.root) as url, browser.chromium() as context:
        page = context.new_page()
        # Injected by the test harness before any page script (not subject to the page's CSP): record violations.
        page.add_init_script(
            "window.__violations = []; document.addEventListener('securitypolicyviolation',"
            " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
        )
        response = page.goto(url)
        assert response is not None
        assert response.headers["content-security-policy"] == dashboard.CSP
        page.wait_for_selector(f'button.tile[data-id="{ns}/{HOSTILE_NAME}"]')
        hostile_tile = tile(page, ns, HOSTILE_NAME)
        assert hostile_tile.get_attribute("data-state") == "failed"
        assert live.message in (hostile_tile.get_attribute("title") or "")
        hostile_tile.click()
        wait_js(
            page,
            "document.querySelector('#device-reason') && document.querySelector('#device-name').textContent === "
            + json.dumps(HOSTILE_NAME),
        )
        # the markup is there, as text, in the reason, the model message, the annotation and the events panel
        assert page.locator("#device-reason").text_content() == live.message
        body = page.locator("#device-body").text_content() or ""
        assert body.count(live.message) >= 3, body  # reason box, model message, annotation (and transitions)
        wait_js(page, "document.querySelector('#events').textContent.includes('HostileMessage')")
        assert live.message in (page.locator("#events").text_content() or "")
        page.wait_for_timeout(1500)  # give anything that might load or run the time to do it
        # and none of it became markup, ran, or asked for anything
        assert page.evaluate("typeof window.__pwned") == "undefined"
        beacon = f"127.0.0.1:{live.beacon.port}"
        made = page.evaluate(
            f'document.querySelectorAll(\'iframe, [onerror], [onload], img[src*="{beacon}"],'
            f' script[src*="{beacon}"]\').length'
        )
        assert made == 0
        assert page.evaluate("Array.from(document.querySelectorAll('b')).some(b => b.textContent === 'bold?')") is False
        assert page.evaluate("Array.from(document.scripts).map(s => s.src)") == [url + "static/app.js"]
        assert page.evaluate("window.__violations") == []
        assert live.beacon.hits == []
        save(page, live.root, "dashboard-hostile.png")
        # The CSP itself is enforced: an inline script added to the page does not run, and is reported.
        page.evaluate(
            "(() => { const s = document.createElement('script'); s.textContent = 'window.__inline = 1';"
            " document.body.appendChild(s); })()"
        )
        wait_js(page, "window.__violations.length > 0")
        assert page.evaluate("typeof window.__inline") == "undefined"
        assert page.evaluate("window.__violations")[0].startswith("script-src")
