"""Model bytes at fleet scale: a 21 MB model to 1,000 real edge agents on 4 sites, three ways, side by side in one run.

Run: ``PYTHONPATH=src python benchmarks/model_bytes.py`` (about 10 minutes on 2 cores; ``--devices``, ``--processes``,
``--download-group``). Needs the control plane binaries (``make controlplane``) and the registry (the script installs
Debian's ``docker-registry`` when it is missing, as the tests do).

One control plane, one fleet (:mod:`edgefleet.testing.fleetsim`, real ``Agent`` loops at nice 10, devices spread
round-robin over sites ``site-0`` .. ``site-3``), one origin registry (distribution 2.8 with TLS and token auth) and
one pull-through cache per site (distribution in proxy mode; each site's devices list it as their mirror, the origin
behind it). The model is :func:`edgefleet.testing.models.wide`: 5.3 M float32 weights, every one used in every
inference, compiled at fp32 (a ~21 MB signed bundle). After 1.0.0 is installed everywhere, each scenario rolls out a
new version with the steps ``setWeight 10 -> pause -> setWeight 50 -> pause -> setWeight 100``:

(a) **embedded store**: the operator serves the bundles itself (the default);
(b) **registry + caches**: the operator (restarted with ``EDGEFLEET_ARTIFACT_BACKEND=oci``) pushes to the origin;
    devices pull through their site's cache;
(c) **(b) with prestage**: ``rollout.prestage`` (``maxConcurrentPerSite: 50``); each pause is promoted once every
    device that is still to switch holds the new version staged;
(d) **registry + HTTP cache per site**: as (b), with nginx (``proxy_cache_lock``) on the caches' addresses instead of
    distribution's proxy, which fetches a missed blob from the origin twice and once more per concurrent miss.

In (a) and (b) the benchmark promotes each pause at once. Reported per scenario: update time (apply -> every device
Active and Healthy on the new version, which needs an inference after the switch: 0.2 per second per device, as in
the fleet benchmark), the compile, per-wave activation time (from the step's start, or its promotion, to the wave's
devices reporting the new version active), the time (c) waited for staging, bytes served by the origin (the
embedded store's own ``edgefleet_artifact_store_sent_bytes_total``, or the origin registry's log) and by the caches
(their logs).

What the simulated devices share (see docs/benchmarks.md): the devices of one worker process and one site form
download groups of ``--download-group`` devices; the first of a group to ask downloads the artifact from its source
(cache or origin) with the real fetcher, the others of the group take that verified file as hard links. Origin and
cache byte counts are real (what the registry and store processes served) and count one download per group.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgefleet.adapters import bundle
from edgefleet.testing import controlplane, httpcache, models, operatorproc, registry
from edgefleet.testing.adder import manifest
from edgefleet.testing.fleetsim import fleet, layout
from edgefleet.testing.operatorproc import OperatorProcess

STEPS: list[dict[str, Any]] = [
    {"setWeight": 10},
    {"pause": {}},
    {"setWeight": 50},
    {"pause": {}},
    {"setWeight": 100},
]
WAVES = (10, 50, 100)
HEALTH = {"latencyP95Ms": 5000.0, "maxErrorRate": 0.05, "minSamples": 1, "windowSeconds": 10}
PRESTAGE = {"maxConcurrentPerSite": 50}
VERSIONS = {"1.0.0": 1.0, "2.0.0": 2.0, "3.0.0": 3.0, "4.0.0": 4.0, "5.0.0": 5.0}
SCENARIOS = (
    ("a", "embedded store", "2.0.0"),
    ("b", "registry + pull-through cache per site", "3.0.0"),
    ("c", "(b) + prestage", "4.0.0"),
    ("d", "registry + HTTP cache per site (nginx)", "5.0.0"),
)


def _metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _active(snap: layout.Snapshot, version: str) -> int:
    """Devices that report ``version`` active (any verdict): a wave is activated when its devices switched."""
    return sum(v for k, v in snap.reported.items() if k.split("|")[1] == version and k.split("|")[3] == "Active")


def _served(reg: registry.Registry | httpcache.HttpCache) -> tuple[int, int]:
    """(GET responses, bytes) of blobs and manifests a registry served so far."""
    served = reg.served().values()
    return sum(s.requests for s in served), sum(s.bytes for s in served)


class Bench:
    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args, self.console = args, console
        self.root = Path(tempfile.mkdtemp(prefix="edgefleet-model-bytes-"))
        self.namespace = f"bytes-{int(time.time())}"
        self.results: list[dict[str, Any]] = []

    def deployment(self, version: str, prestage: bool) -> str:
        body = json.loads(manifest(self.namespace, self.url, version, self.models, STEPS))
        spec = body["spec"]
        spec["health"] = HEALTH
        spec["compile"]["targets"][0]["precision"] = "fp32"  # the bytes this benchmark is about
        spec["rollout"].update(maxUnavailable="100%", progressDeadlineSeconds=3600)
        if prestage:
            spec["rollout"]["prestage"] = PRESTAGE
        return json.dumps(body)

    def md(self) -> dict[str, Any]:
        out = self.cp.kubectl("-n", self.namespace, "get", "md", "adder", "-o", "json", check=False)
        if out.returncode != 0:
            return {}
        status: dict[str, Any] = json.loads(out.stdout).get("status") or {}
        return status

    def wait(self, what: str, done: Any, timeout: float) -> float:
        began = time.monotonic()
        while True:
            if done():
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise fleet.FleetError(f"timed out after {timeout:.0f}s waiting for {what}; md status {self.md()}")
            self.sim.check()
            time.sleep(0.25)

    def run(self) -> None:
        args = self.args
        with contextlib.ExitStack() as stack:
            stack.callback(shutil.rmtree, self.root, ignore_errors=True)
            self.cp = cp = stack.enter_context(controlplane.running())
            cp.kubectl("create", "namespace", self.namespace)
            tls = registry.certificates(self.root / "tls")
            origin = stack.enter_context(
                registry.running(self.root / "origin", tls, auth=registry.TEST_CREDENTIALS, token_auth=True)
            )
            # One cache address per site; (b) and (c) run distribution's pull-through caches there, (d) nginx on the
            # same addresses (the devices' mirror lists stay as they are).
            ports = [controlplane.free_port() for _ in range(layout.SITES)]
            proxies = contextlib.ExitStack()
            caches: list[registry.Registry | httpcache.HttpCache] = [
                proxies.enter_context(
                    registry.running(self.root / f"cache-site-{s}", tls, proxy_of=origin, port=ports[s])
                )
                for s in range(layout.SITES)
            ]
            stack.callback(proxies.close)
            self.models = self.root / "models"
            self.models.mkdir()
            for version, offset in VERSIONS.items():
                (self.models / f"{version}.onnx").write_bytes(models.wide(offset))
            (self.models / "eval.npz").write_bytes(models.evaluation_set(4, samples=32))
            self.url = stack.enter_context(models.served(self.models))
            key = bundle.generate_key()
            trust = self.root / "trust.pem"
            trust.write_bytes(bundle.public_key_pem(key.public_key()))
            operatorproc.create_signing_secret(cp, self.namespace, key)
            user, password = registry.TEST_CREDENTIALS
            cp.kubectl(
                "-n", self.namespace, "create", "secret", "docker-registry", "registry",
                f"--docker-server={origin.host}", f"--docker-username={user}", f"--docker-password={password}",
            )  # fmt: skip
            auth = self.root / "registry-auth.json"
            auth.write_text(json.dumps(origin.docker_config(*(f"127.0.0.1:{p}" for p in ports))))
            store_port = controlplane.free_port()
            base_env = operatorproc.operator_env(
                cp, self.namespace, self.root / "store", store_port, extra={"EDGEFLEET_RESYNC_SECONDS": "10"}
            )
            self.store_url = f"http://127.0.0.1:{store_port}"
            oci_env = {
                **base_env,
                "EDGEFLEET_ARTIFACT_BACKEND": "oci",
                "EDGEFLEET_OCI_REPOSITORY": f"{origin.host}/bench",
                "EDGEFLEET_OCI_SECRET": f"{self.namespace}/registry",
                "EDGEFLEET_OCI_CA_FILE": str(tls.ca_file),
            }
            operator = OperatorProcess(base_env, self.namespace, self.root / "operator.log")
            operator.start()
            stack.callback(lambda: operator.stop())
            mirrors = {f"site-{s}": [{"url": caches[s].url, "origins": [origin.host]}] for s in range(layout.SITES)}
            spec = layout.FleetSpec(
                kubeconfig=str(cp.kubeconfig),
                namespace=self.namespace,
                devices=args.devices,
                processes=args.processes,
                root=str(self.root / "fleet"),
                trust_keys=(str(trust),),
                load_rps=args.load_rps,
                watch="hub",
                nice=10,
                mirrors=mirrors,
                ca_file=str(tls.ca_file),
                registry_config=str(auth),
                download_group=args.download_group,
            )
            self.sim = stack.enter_context(fleet.Fleet(spec).start())
            # One real download per download group and artifact: the groups of every worker process.
            self.groups = sum(
                len({spec.download_group_of(i) for i in shard}) for shard in layout.shards(spec.devices, spec.processes)
            )
            n = args.devices
            t = self.wait("registration", lambda: self.sim.snapshot().registered == n, 120 + n / 10)
            self.console.print(f"{n} devices registered in {t:.1f}s")
            self.cp.kubectl("apply", "-f", "-", input=self.deployment("1.0.0", prestage=False))
            t = self.wait(
                "1.0.0 everywhere", lambda: self._promote_all() or self.sim.snapshot().count("1.0.0") == n, 900
            )
            self.console.print(f"1.0.0 (initial install, compile included) on every device in {t:.1f}s")
            self.bundle_bytes = int((self.md().get("artifacts") or [{}])[0].get("sizeBytes", 0))
            time.sleep(HEALTH["windowSeconds"] + 1)
            for letter, title, version in SCENARIOS:
                if letter == "b":
                    operator.stop()
                    operator.env = oci_env
                    operator.start()
                    time.sleep(3)
                if letter == "d":
                    proxies.close()
                    caches = [
                        stack.enter_context(httpcache.running(self.root / f"nginx-site-{s}", origin, port=ports[s]))
                        for s in range(layout.SITES)
                    ]
                result = self.scenario(letter, title, version, origin, caches)
                self.results.append(result)
                self.console.print(self.table())
                if args.json:
                    args.json.write_text(json.dumps(self.results, indent=1))
                time.sleep(HEALTH["windowSeconds"] + 1)

    def _promote_all(self) -> bool:
        """Promote a pause the rollout waits at (the initial install goes straight through)."""
        status = self.md()
        if status.get("phase") == "Paused" and status.get("canaryRevision") is not None:
            step = int(status.get("currentStepIndex") or 0)
            self.cp.kubectl(
                "-n", self.namespace, "annotate", "md", "adder", "--overwrite",
                f"edgefleet.io/promote={status['canaryRevision']}/{step}",
            )  # fmt: skip
        return False

    def scenario(
        self,
        letter: str,
        title: str,
        version: str,
        origin: registry.Registry,
        caches: list[registry.Registry | httpcache.HttpCache],
    ) -> dict[str, Any]:
        n, prestage = self.args.devices, letter == "c"
        origin0 = (
            _served(origin)
            if letter != "a"
            else (0, int(_metric(self.store_url, "edgefleet_artifact_store_sent_bytes_total")))
        )
        caches0 = [_served(c) for c in caches]
        began = time.monotonic()
        self.cp.kubectl("apply", "-f", "-", input=self.deployment(version, prestage))
        targets = [math.ceil(n * w / 100) for w in WAVES]
        marks: dict[str, float] = {}
        waves: list[float] = []
        staging_wait = 0.0
        wave_start = 0.0
        last_status = 0.0
        status: dict[str, Any] = {}
        while True:
            now = time.monotonic()
            snap = self.sim.snapshot()
            healthy = snap.count(version)
            active = _active(snap, version)
            if now - last_status >= 1.0:
                status, last_status = self.md(), now
            canary = str(status.get("canaryRevision") or "")
            if "compiled" not in marks and canary.startswith(version):
                marks["compiled"] = now - began
                wave_start = now
            if "compiled" in marks and len(waves) < len(WAVES) and active >= targets[len(waves)]:
                waves.append(now - wave_start)
                wave_start = float("inf")
            if status.get("phase") == "Paused" and canary.startswith(version) and len(waves) < len(WAVES):
                devices = status.get("devices") or {}
                remaining = n - int(devices.get("updated", 0))
                ready = not prestage or int(devices.get("staged", 0)) >= remaining
                if prestage and "staging" not in marks:
                    marks["staging"] = now
                if ready and wave_start == float("inf"):
                    if prestage:
                        staging_wait += now - marks.pop("staging")
                    self._promote_all()
                    wave_start = time.monotonic()
                    last_status = 0.0
            if healthy == n:
                break
            if now - began > self.args.timeout:
                raise fleet.FleetError(f"{title}: timed out; {active}/{n} on {version}; md {status}")
            self.sim.check()
            time.sleep(0.25)
        total = time.monotonic() - began
        if letter == "a":
            origin1 = (0, int(_metric(self.store_url, "edgefleet_artifact_store_sent_bytes_total")))
        else:
            origin1 = _served(origin)
        caches1 = [_served(c) for c in caches]
        result = {
            "scenario": letter,
            "title": title,
            "version": version,
            "devices": n,
            "sites": layout.SITES,
            "downloadGroup": self.args.download_group,
            "downloads": self.groups,
            "bundleBytes": self.bundle_bytes,
            "updateSeconds": total,
            "compileSeconds": marks.get("compiled", 0.0),
            "waveSeconds": waves,
            "stagingWaitSeconds": staging_wait,
            "originBytes": origin1[1] - origin0[1],
            "originRequests": origin1[0] - origin0[0] if letter != "a" else None,
            "cacheBytes": sum(c1[1] - c0[1] for c0, c1 in zip(caches0, caches1, strict=True)),
            "cacheRequests": sum(c1[0] - c0[0] for c0, c1 in zip(caches0, caches1, strict=True)),
        }
        self.console.print(f"({letter}) {title}: every device on {version} in {total:.1f}s; waves {waves}")
        return result

    def table(self) -> Table:
        t = Table(title=f"Model bytes: {self.args.devices:,} devices, {layout.SITES} sites, one run")
        for col in (
            "scenario",
            "bundle",
            "update to 100 %",
            "compile",
            "wave 10 % / 50 % / 100 % activation",
            "waiting for staging",
            "origin served",
            "origin / (sites x bundle)",
            "caches served",
            "downloads (groups of devices)",
        ):
            t.add_column(col, justify="right")
        for r in self.results:
            size = r["bundleBytes"] or 1
            waves = " / ".join(f"{w:.1f} s" for w in r["waveSeconds"])
            t.add_row(
                f"({r['scenario']}) {r['title']}",
                f"{size / 1e6:.1f} MB",
                f"{r['updateSeconds']:.1f} s",
                f"{r['compileSeconds']:.1f} s",
                waves,
                f"{r['stagingWaitSeconds']:.1f} s" if r["scenario"] == "c" else "-",
                f"{r['originBytes'] / 1e6:,.0f} MB",
                f"{r['originBytes'] / (r['sites'] * size):.2f}",
                f"{r['cacheBytes'] / 1e6:,.0f} MB",
                f"{r['downloads']} (up to {r['downloadGroup']} devices each)",
            )
        return t


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--download-group", type=int, default=10, help="devices of one process and site per download")
    p.add_argument("--load-rps", type=float, default=0.2, help="synthetic inferences per device per second")
    p.add_argument("--timeout", type=float, default=1200.0, help="per scenario")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    console = Console(width=220)
    bench = Bench(args, console)
    try:
        bench.run()
    except fleet.FleetError as exc:
        console.print(f"[red]did not finish: {exc}")
        return 1
    console.print(bench.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
