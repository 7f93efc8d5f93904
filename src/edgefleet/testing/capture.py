"""Capture ModelDeployment and EdgeDevice objects from the real operator at every stage of a rollout.

Argo CD health scripts, kstatus and Flux's health expressions are judged on these objects
(``tests/fixtures/health/``), so they must be what the operator really writes, not what we think it writes. This
module drives the real operator process against a real API server (the harness's control plane, the simulated
device fleet of :mod:`edgefleet.testing.devices`) through every stage and stores the first object seen in each:

=======================  ===========================================================================================
``created``              the object as applied, before the operator wrote any status (the CRD's default)
``compiling``            the first revision is being compiled
``canary``               2.0.0 on the first ``setWeight`` step (step 1)
``analysis``             the analysis step (step 2)
``paused``               a ``pause`` step without duration: waiting for ``edgefleet rollout promote``
``held``                 the same step, also held by the ``edgefleet.io/paused`` annotation
``healthy``              2.0.0 promoted to stable on every device
``rolling-back``         3.0.0 failed on its canaries; devices are on their way back to stable
``rolled-back``          every device back on stable, 3.0.0 recorded as aborted
``accuracy-gate-failed`` a second deployment whose compile cannot meet its accuracy budget
``deleting``             deleted, held by the operator's finalizer while it removes the model from devices
=======================  ===========================================================================================

EdgeDevices: ``device-healthy`` (on the stable revision, healthy) and ``device-unhealthy`` (a 3.0.0 canary
reporting an unhealthy verdict), as the simulated agents write them: their models' reports, with the conditions and
``observedGeneration`` the real agent derives from such reports (:mod:`edgefleet.core.deviceconditions`).

The stored objects keep what a health check reads (spec, status, metadata without ``managedFields``). Regenerate with
``python -m edgefleet.testing.capture tests/fixtures/health`` (starts its own control plane; about a minute).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgefleet.testing import controlplane, fleetstack, models
from edgefleet.testing.devices import SimulatedFleet

NAMESPACE = "capture"
N_DEVICES = 10
STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"analysis": {"durationSeconds": 3, "minSamples": 50}},
    {"pause": {}},
    {"setWeight": 100},
]
MD_STAGES = (
    "created",
    "compiling",
    "canary",
    "analysis",
    "paused",
    "held",
    "healthy",
    "rolling-back",
    "rolled-back",
    "accuracy-gate-failed",
    "deleting",
)
DEVICE_STAGES = ("device-healthy", "device-unhealthy")

Object = dict[str, Any]


class Watch:
    """``kubectl get KIND NAME --watch -o json`` in a thread, keeping every version of the object it prints."""

    def __init__(self, cp: controlplane.ControlPlane, namespace: str, kind: str, name: str) -> None:
        self.seen: list[Object] = []
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [
                controlplane.kubectl_binary(),
                "--kubeconfig",
                str(cp.kubeconfig),
                "-n",
                namespace,
                "get",
                kind,
                name,
                "--watch",
                "-o",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self._proc.stdout:
            buffer += line
            while buffer.strip():
                try:
                    obj, end = decoder.raw_decode(buffer.lstrip())
                except json.JSONDecodeError:
                    break
                buffer = buffer.lstrip()[end:]
                with self._lock:
                    self.seen.append(obj)

    def first(self, predicate: Callable[[Object], bool], timeout: float, what: str) -> Object:
        """The first version seen (so far or within ``timeout``) that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                match = next((o for o in self.seen if predicate(o)), None)
                last = self.seen[-1] if self.seen else {}
            if match is not None:
                return match
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} seen in {timeout:.0f} s; last: {json.dumps(last.get('status'))[:800]}")
            time.sleep(0.1)

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._thread.join(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def _status(obj: Object) -> Object:
    status: Object = obj.get("status") or {}
    return status


def _conditions(obj: Object) -> dict[str, Object]:
    return {c["type"]: c for c in _status(obj).get("conditions") or []}


def _phase(obj: Object) -> str | None:
    phase: str | None = _status(obj).get("phase")
    return phase


def _canary(obj: Object, version: str) -> bool:
    return str(_status(obj).get("canaryRevision") or "").startswith(version)


def clean(obj: Object) -> Object:
    """The object without what no health check reads and what changes on every run of the API server."""
    out: Object = json.loads(json.dumps(obj))
    meta = out.get("metadata") or {}
    for key in ("managedFields", "resourceVersion", "uid"):
        meta.pop(key, None)
    (meta.get("annotations") or {}).pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if meta.get("annotations") == {}:
        meta.pop("annotations")
    return out


@contextlib.contextmanager
def _fleet(cp: controlplane.ControlPlane, bad: set[str]) -> Iterator[SimulatedFleet]:
    fleet = SimulatedFleet(
        cp.kubeconfig,
        NAMESPACE,
        verdict=lambda _d, revision: "Unhealthy" if any(revision.startswith(v) for v in bad) else "Healthy",
        agent_conditions=True,
    )
    for i in range(N_DEVICES):
        fleet.create(
            f"dev-{i:02d}",
            {
                "app": "adder",
                "edgefleet.io/site": f"site-{i % 2}",
                "edgefleet.io/line": f"line-{i % 3}",
                "edgefleet.io/hardware-class": "x86",
            },
        )
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()


def _gate_deployment(stack: fleetstack.Stack) -> str:
    """A deployment whose INT8 compile cannot meet a zero relative-error budget (AccuracyGateFailed)."""
    import hashlib

    (stack.models / "linear.onnx").write_bytes(models.linear(1))
    (stack.models / "linear-eval.npz").write_bytes(models.evaluation_set(16))
    body = json.loads(stack.deployment("1.0.0", STEPS, {}))
    body["metadata"]["name"] = "gate"
    body["spec"]["selector"] = {"matchLabels": {"app": "gate"}}
    body["spec"]["model"].update(
        name="gate",
        uri=f"{stack.url}/linear.onnx",
        sha256=hashlib.sha256((stack.models / "linear.onnx").read_bytes()).hexdigest(),
    )
    body["spec"]["compile"]["targets"][0].update(
        precision="int8",
        accuracyBudget={"maxRelativeError": 0.0},
        evaluation={
            "uri": f"{stack.url}/linear-eval.npz",
            "sha256": hashlib.sha256((stack.models / "linear-eval.npz").read_bytes()).hexdigest(),
        },
    )
    return json.dumps(body)


def _device(cp: controlplane.ControlPlane, predicate: Callable[[Object], bool]) -> Object | None:
    listing = json.loads(cp.kubectl("-n", NAMESPACE, "get", "ed", "-o", "json").stdout)["items"]
    return next((d for d in sorted(listing, key=lambda d: d["metadata"]["name"]) if predicate(d)), None)


def _settled(obj: Object) -> bool:
    return bool(_status(obj).get("observedGeneration") == obj["metadata"].get("generation"))


def _verdicts(device: Object) -> set[str]:
    return {((m.get("health") or {}).get("verdict") or "") for m in _status(device).get("models") or []}


def capture(cp: controlplane.ControlPlane, root: Path) -> dict[str, Object]:
    """Drive the real operator through every stage; returns the cleaned object of each stage, by stage name."""
    cp.kubectl("create", "namespace", NAMESPACE)
    found: dict[str, Object] = {}
    bad: set[str] = set()
    with fleetstack.running(cp, NAMESPACE, root) as stack, _fleet(cp, bad):
        # "created" has no status yet: apply while the operator is stopped, then start it.
        stack.operator.stop()
        stack.apply(stack.deployment("1.0.0", STEPS, {}, max_unavailable="50%"))
        watch = Watch(cp, NAMESPACE, "md", "adder")
        try:
            found["created"] = watch.first(lambda o: not _status(o).get("conditions"), 30, "object without conditions")
            stack.operator.start()
            found["compiling"] = watch.first(lambda o: _phase(o) == "Compiling", 120, "Compiling")
            watch.first(lambda o: _phase(o) == "Healthy", 120, "1.0.0 Healthy")

            stack.apply(stack.deployment("2.0.0", STEPS, {}, max_unavailable="50%"))

            def at(step: int, phase: str) -> Callable[[Object], bool]:
                return lambda o: _canary(o, "2.0.0") and _status(o).get("currentStep") == step and _phase(o) == phase

            found["canary"] = watch.first(at(1, "Progressing"), 180, "2.0.0 canary on step 1")
            found["analysis"] = watch.first(at(2, "Progressing"), 120, "2.0.0 analysis on step 2")
            found["paused"] = watch.first(at(3, "Paused"), 120, "2.0.0 paused on step 3")
            paused = found["paused"]["status"]
            cp.kubectl("-n", NAMESPACE, "annotate", "md", "adder", "edgefleet.io/paused=true")
            found["held"] = watch.first(
                lambda o: at(3, "Paused")(o) and "edgefleet.io/paused" in _conditions(o)["Ready"].get("message", ""),
                60,
                "held by annotation",
            )
            cp.kubectl("-n", NAMESPACE, "annotate", "md", "adder", "edgefleet.io/paused-")
            promote = f"edgefleet.io/promote={paused['canaryRevision']}/{paused['currentStepIndex']}"
            cp.kubectl("-n", NAMESPACE, "annotate", "--overwrite", "md", "adder", promote)
            found["healthy"] = watch.first(
                lambda o: _phase(o) == "Healthy" and str(_status(o).get("stableRevision", "")).startswith("2.0.0"),
                120,
                "2.0.0 Healthy",
            )
            found["device-healthy"] = _require(_device(cp, lambda d: _verdicts(d) == {"Healthy"}), "healthy device")

            bad.add("3.0.0")
            stack.apply(stack.deployment("3.0.0", STEPS, {}, max_unavailable="50%"))
            unhealthy = None
            deadline = time.monotonic() + 120
            while unhealthy is None and time.monotonic() < deadline:
                # settled: the report is about the spec the device was last given (the operator rewrites the entry
                # as it reacts, and kstatus reads a report older than its spec as InProgress)
                unhealthy = _device(cp, lambda d: "Unhealthy" in _verdicts(d) and _settled(d))
                time.sleep(0.2)
            found["device-unhealthy"] = _require(unhealthy, "unhealthy canary device")
            found["rolling-back"] = watch.first(
                lambda o: _phase(o) == "RolledBack" and "Reconciling" in _conditions(o), 120, "rolling back"
            )
            found["rolled-back"] = watch.first(
                lambda o: _phase(o) == "RolledBack" and "Stalled" in _conditions(o), 120, "rolled back"
            )

            stack.apply(_gate_deployment(stack))
            gate = Watch(cp, NAMESPACE, "md", "gate")
            try:
                found["accuracy-gate-failed"] = gate.first(
                    lambda o: _conditions(o).get("Stalled", {}).get("reason") == "AccuracyGateFailed",
                    180,
                    "AccuracyGateFailed",
                )
            finally:
                gate.stop()

            cp.kubectl("-n", NAMESPACE, "delete", "md", "adder", "--wait=false")
            found["deleting"] = watch.first(
                lambda o: bool((o.get("metadata") or {}).get("deletionTimestamp")), 60, "deleting"
            )
        finally:
            watch.stop()
    return {stage: clean(obj) for stage, obj in found.items()}


def _require(obj: Object | None, what: str) -> Object:
    if obj is None:
        raise TimeoutError(f"no {what} seen")
    return obj


def write(objects: dict[str, Object], directory: Path) -> list[Path]:
    """Store each stage as ``<directory>/<stage>.json`` (sorted keys, so a regenerated set diffs cleanly)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for stage in (*MD_STAGES, *DEVICE_STAGES):
        path = directory / f"{stage}.json"
        path.write_text(json.dumps(objects[stage], indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgefleet.testing.capture",
        description="Capture ModelDeployment/EdgeDevice objects from the real operator at every rollout stage.",
    )
    parser.add_argument("directory", type=Path, help="where to write <stage>.json (tests/fixtures/health)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgefleet-capture-") as tmp:
        cp = controlplane.start(Path(tmp) / "cp")
        try:
            objects = capture(cp, Path(tmp) / "stack")
        finally:
            cp.stop()
    for path in write(objects, args.directory):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
