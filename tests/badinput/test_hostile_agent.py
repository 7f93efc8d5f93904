"""Issue 18 against a real ``edgefleet-agent`` process: hostile bundles, connections, requests and specs never stop
the device from serving, and what it refused is in its status.

Each test asserts the state the device ends in (still serving the good version, status saying why, 400 not 500,
``/healthz`` answering) and counts its hostile inputs into the bad-input total.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import resource
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle
from edgefleet.api.edgedevice import ArtifactRef, DesiredModel
from edgefleet.api.modeldeployment import HealthSpec
from edgefleet.edge_reconciler import state
from edgefleet.testing import artifact_server, onnx_models
from edgefleet.testing.agent_harness import desired, spec_json
from edgefleet.testing.agent_process import AgentProcess
from edgefleet.testing.badinput import COUNTS as tried

HEALTH = HealthSpec(latency_p95_ms=1000.0, max_error_rate=0.01, min_samples=5, window_seconds=30)


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"not met within {timeout}s: {what} (last: {last!r})")


def post(url: str, body: bytes, headers: dict[str, str] | None = None, timeout: float = 30.0) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, json.loads(
                resp.read() or b"null"
            ) if resp.headers.get_content_type() != "application/octet-stream" else None
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        exc.close()
        try:
            return exc.code, json.loads(payload)
        except ValueError:
            return exc.code, payload


def get(url: str, timeout: float = 10.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def predict(dev: AgentProcess, x: Any, name: str = "demo") -> tuple[int, Any]:
    return post(
        f"{dev.url}/v1/models/{name}:predict",
        json.dumps({"inputs": {"x": x}}).encode(),
        {"Content-Type": "application/json"},
    )


POSITIVE = [[0.5, 0.25, 1.0, 0.75]]


@pytest.fixture
def artifacts() -> Iterator[artifact_server.ArtifactServer]:
    with artifact_server.running() as server:
        yield server


@pytest.fixture
def key() -> ed25519.Ed25519PrivateKey:
    return bundle.generate_key()


def serving_v1(tmp_path: Path, key: ed25519.Ed25519PrivateKey, artifacts: artifact_server.ArtifactServer, **kw: Any):  # type: ignore[no-untyped-def]
    v1 = onnx_models.make_bundle(key, "demo", "1.0.0")
    url = artifacts.publish(v1.filename, v1.data)
    dev = AgentProcess(tmp_path / "device", key.public_key(), **kw)
    dev.desired.write_text(spec_json([desired(v1, url, health=HEALTH)]))
    dev.start()
    wait_for(lambda: dev.model().get("activeVersion") == "1.0.0", what="v1 active")
    return dev, v1, url


def crafted(name: str, data: bytes, artifacts: artifact_server.ArtifactServer, version: str = "2.0.0") -> DesiredModel:
    uri = artifacts.publish(f"crafted-{name}.bundle", data)
    return DesiredModel(
        name="demo",
        deployment="demo",
        version=version,
        revision=f"demo-{version}",
        artifact=ArtifactRef(uri=uri, digest=bundle.sha256_digest(data), size_bytes=len(data), precision="fp32"),
        health=HEALTH,
    )


def signed(key: ed25519.Ed25519PrivateKey, change: Callable[[dict[str, Any]], None]) -> bytes:
    manifest = onnx_models.manifest_for("demo", "2.0.0")
    change(manifest)
    return onnx_models.signed_unchecked(manifest, {bundle.MODEL: onnx_models.model_bytes("good", "2.0.0")}, key)[1]


def unsigned(manifest: bytes) -> bytes:
    return bundle._pack({"manifest.json": manifest, "model.onnx": b"m", "signature.json": b"{}"})


def set_golden(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(manifest: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        target = manifest
        for part in parents:
            target = target[part]
        target[leaf] = value

    return change


# --- case 1: bundles that crashed the agent before their signature was checked -------------------------------------


def test_crafted_bundles_are_rejected_and_the_agent_keeps_serving(
    tmp_path: Path, key: ed25519.Ed25519PrivateKey, artifacts: artifact_server.ArtifactServer
) -> None:
    cases = {
        "files-list": unsigned(b'{"files":[1]}'),
        "files-dict-of-strings": unsigned(b'{"files":{"model.onnx":"x"}}'),
        "nested-brackets": unsigned(b"[" * (16 * 1024 * 1024 - 1)),
        "rtol-string": signed(key, set_golden("golden.rtol", "abc")),
        "golden-list": signed(key, set_golden("golden", [1])),
        "samples-of-lists": signed(key, set_golden("golden.samples", [[1]])),
        "model-string": signed(key, set_golden("model", "demo")),
        "dtype-object": signed(
            key, set_golden("golden.samples", [{"inputs": {"x": {"dtype": "O", "shape": [1], "data": ""}}}])
        ),
        "shape-negative": signed(
            key,
            set_golden("golden.samples", [{"inputs": {"x": {"dtype": "float32", "shape": [-1], "data": "AACAPw=="}}}]),
        ),
    }
    dev, _, _ = serving_v1(tmp_path, key, artifacts)
    try:
        for index, (name, data) in enumerate(cases.items()):
            tried["hostile bundles (agent process)"] += 1
            want = crafted(name, data, artifacts, version=f"2.0.{index}")
            dev.desired.write_text(spec_json([want]))
            model = wait_for(
                lambda d=want.artifact.digest: (
                    dev.model().get("desiredDigest") == d and dev.model().get("state") == "Failed" and dev.model()
                ),
                what=f"{name} rejected",
            )
            assert model["message"].startswith(("VerificationFailed:", "SmokeTestFailed:")), (name, model)
            assert dev.alive(), f"agent exited on {name}:\n{dev.log_text()[-3000:]}"
            status, body = predict(dev, POSITIVE)
            assert status == 200 and body["model"]["version"] == "1.0.0", (name, status, body)
        # The journal remembers every rejected digest: a restart (even an unclean one) does not try them again,
        # and does not die on them.
        assert dev.proc is not None
        dev.proc.kill()
        dev.proc.wait(10)
        dev.start()
        dev.wait_ready()
        time.sleep(2.0)
        assert dev.alive()
        status, body = predict(dev, POSITIVE)
        assert status == 200 and body["model"]["version"] == "1.0.0"
        assert "Traceback" not in dev.log_text()
    finally:
        dev.stop()


def test_hostile_slot_content_and_a_damaged_journal_do_not_stop_the_agent(
    tmp_path: Path, key: ed25519.Ed25519PrivateKey, artifacts: artifact_server.ArtifactServer
) -> None:
    """Start-up reads the journal and re-verifies the slots it names: hostile content there is discarded."""
    v1 = onnx_models.make_bundle(key, "demo", "1.0.0")
    url = artifacts.publish(v1.filename, v1.data)
    dev = AgentProcess(tmp_path / "device", key.public_key())
    dev.desired.write_text(spec_json([desired(v1, url, health=HEALTH)]))
    # An active slot holding a signed bundle whose manifest is malformed (as if an older agent had installed it).
    evil = signed(key, set_golden("golden.rtol", "abc"))
    store = state.Store(tmp_path / "device" / "state")
    record = state.SlotRecord(digest=bundle.sha256_digest(evil), version="2.0.0", revision="r2")
    store.update_model(store.model("demo").switched("a", record, None))
    state.write_atomic(store.slot_path("demo", "a"), evil)
    tried["hostile journal/slot content"] += 1
    dev.start()
    try:
        wait_for(lambda: dev.model().get("activeVersion") == "1.0.0", what="re-downloaded v1")
        assert dev.alive()
        assert "Discarded damaged slot" in dev.log_text()
    finally:
        assert dev.stop() == 0
    # A journal damaged from outside: kept aside, the device starts fresh instead of exiting at every start.
    (tmp_path / "device" / "state" / "journal.json").write_text('{"models": {"demo": {"active": "zz"}}')
    tried["hostile journal/slot content"] += 1
    dev.status_file.unlink()
    dev.start()
    try:
        dev.wait_ready()
        wait_for(lambda: dev.model().get("activeVersion") == "1.0.0" and dev.alive(), what="fresh start")
        assert list((tmp_path / "device" / "state").glob("journal.damaged-*.json"))
    finally:
        assert dev.stop() == 0


# --- case 2: descriptors ----------------------------------------------------------------------------------------


def test_idle_connections_cannot_exhaust_descriptors(
    tmp_path: Path, key: ed25519.Ed25519PrivateKey, artifacts: artifact_server.ArtifactServer
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    dev, _, _ = serving_v1(tmp_path, key, artifacts, server={"maxConnections": 200, "idleTimeoutSeconds": 2})
    held: list[socket.socket] = []
    try:
        refused = 0
        for _ in range(1100):
            sock = socket.create_connection(("127.0.0.1", dev.port), timeout=5)
            held.append(sock)
        tried["idle connections"] += len(held)
        # Every connection over the cap was answered 503 and closed by the agent at once.
        for sock in held[200:]:
            sock.settimeout(5)
            if sock.recv(64).startswith(b"HTTP/1.1 503"):
                refused += 1
        assert refused == 900
        # The device keeps following its desired file while the connections are held (it used to die on EMFILE).
        v2 = onnx_models.make_bundle(key, "demo", "2.0.0")
        url2 = artifacts.publish(v2.filename, v2.data)
        dev.desired.write_text(spec_json([desired(v2, url2, health=HEALTH)]))
        wait_for(lambda: dev.model().get("activeVersion") == "2.0.0", what="v2 installed under load")
        # Idle connections are closed after idleTimeoutSeconds; then the server answers again.
        wait_for(lambda: _try(lambda: get(f"{dev.url}/healthz", timeout=2)) == 200, timeout=20, what="healthz")
        assert dev.alive()
    finally:
        for sock in held:
            sock.close()
        dev.stop()
    log = dev.log_text()
    assert "Too many open files" not in log
    assert len(log) < 200_000, len(log)


def _try(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except OSError:
        return None


# --- cases 3 and 5: request size, event loop, malformed requests --------------------------------------------------


def test_large_requests_are_bounded_and_healthz_stays_responsive(
    tmp_path: Path, key: ed25519.Ed25519PrivateKey, artifacts: artifact_server.ArtifactServer
) -> None:
    dev, _, _ = serving_v1(tmp_path, key, artifacts)
    url = f"{dev.url}/v1/models/demo:predict"
    try:
        big = b'{"inputs":{"x":[' + b",".join([b"[0.5,0.25,1.0,0.75]"] * 3_000_000) + b"]}}"  # ~60 MB
        assert len(big) > 55_000_000
        within = b'{"inputs":{"x":[' + b",".join([b"[0.5,0.2,1,0.7]"] * 65_000) + b"]}}"  # just under 1 MiB
        assert len(within) < 1024 * 1024
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            large = [pool.submit(post, url, big, {"Content-Type": "application/json"}) for _ in range(4)]
            for future in large:
                status, body = future.result(timeout=60)
                assert status == 413 and body["error"]["class"] == "TooLarge", (status, body)
            tried["oversized requests"] += 4
            # Four requests at the JSON cap in flight: /healthz answers while they are parsed off the event loop.
            began = time.monotonic()
            inflight = [pool.submit(post, url, within, {"Content-Type": "application/json"}) for _ in range(4)]
            slowest, answered = 0.0, 0
            while not all(f.done() for f in inflight):
                start = time.monotonic()
                assert get(f"{dev.url}/healthz", timeout=60) == 200
                slowest = max(slowest, time.monotonic() - start)
                answered += 1
            busy = time.monotonic() - began
            results = [f.result() for f in inflight]
        assert all(status == 200 for status, _ in results), [s for s, _ in results]
        # Relative, so a loaded machine does not decide it: with parsing on the event loop, /healthz waited for the
        # whole batch (the issue measured 14.5 s); now it waits at most for one bounded parse step.
        assert answered >= 2 and slowest < busy / 2, (answered, slowest, busy)
        assert dev.peak_rss_bytes() < 700 * 1024**2, dev.peak_rss_bytes()
        assert dev.alive()
    finally:
        dev.stop()


MALFORMED: dict[str, tuple[bytes, dict[str, str], str]] = {
    "dtype foo": (b"\0" * 16, {"X-Edgefleet-Dtype": "foo", "X-Edgefleet-Shape": "1,4"}, "BadInput"),
    "dtype empty": (b"\0" * 16, {"X-Edgefleet-Dtype": " ", "X-Edgefleet-Shape": "1,4"}, "BadInput"),
    "dtype U1": (b"\0" * 16, {"X-Edgefleet-Dtype": "U1", "X-Edgefleet-Shape": "1,4"}, "BadInput"),
    "dtype object": (b"\0" * 16, {"X-Edgefleet-Dtype": "O", "X-Edgefleet-Shape": "1,4"}, "BadInput"),
    "unknown output": (b"\0" * 16, {"X-Edgefleet-Output": "nope", "X-Edgefleet-Shape": "1,4"}, "UnknownOutput"),
    "unknown input": (b"\0" * 16, {"X-Edgefleet-Input": "nope", "X-Edgefleet-Shape": "1,4"}, "UnknownInput"),
    "shape huge": (b"\0" * 16, {"X-Edgefleet-Shape": "999999999999,999999999999"}, "BadInput"),
    "shape negative": (b"\0" * 16, {"X-Edgefleet-Shape": "-1,4"}, "BadRequest"),
    "shape garbage": (b"\0" * 16, {"X-Edgefleet-Shape": "1,x"}, "BadRequest"),
    "shape wrong rank": (b"\0" * 64, {"X-Edgefleet-Shape": "16"}, "BadShape"),
    "shape wrong dim": (b"\0" * 20, {"X-Edgefleet-Shape": "1,5"}, "BadShape"),
    "body short": (b"\0" * 15, {"X-Edgefleet-Shape": "1,4"}, "BadInput"),
}
MALFORMED_JSON: dict[str, tuple[bytes, str]] = {
    "nested 100000 deep": (b'{"inputs":{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}}", "BadRequest"),
    "integer 10**400": (b'{"inputs":{"x":[[' + b"1" + b"0" * 400 + b",1,1,1]]}}", "BadInput"),
    "integer 5000 digits": (b'{"inputs":{"x":[[' + b"7" * 5000 + b",1,1,1]]}}", "BadRequest"),
    "not json": (b"{", "BadRequest"),
    "not utf-8": (b"\xff\xfe", "BadRequest"),
    "inputs missing": (b"{}", "BadRequest"),
    "inputs a list": (b'{"inputs":[1]}', "BadRequest"),
    "ragged": (b'{"inputs":{"x":[[1,2],[3]]}}', "BadInput"),
    "strings": (b'{"inputs":{"x":[["a","b","c","d"]]}}', "BadInput"),
    "wrong shape": (b'{"inputs":{"x":[[1,2,3]]}}', "BadShape"),
    "unknown input": (b'{"inputs":{"y":[[1,2,3,4]]}}', "UnknownInput"),
    "encoded bad dtype": (b'{"inputs":{"x":{"dtype":"U1","shape":[1,4],"data":""}}}', "BadInput"),
    "encoded bad base64": (b'{"inputs":{"x":{"dtype":"float32","shape":[1,4],"data":"!!"}}}', "BadInput"),
    "encoded shape bomb": (
        b'{"inputs":{"x":{"dtype":"float32","shape":[100000,100000,100000],"data":""}}}',
        "BadInput",
    ),
    "encoded negative shape": (b'{"inputs":{"x":{"dtype":"float32","shape":[-1],"data":"AACAPw=="}}}', "BadInput"),
}


def test_every_malformed_request_gets_400_and_the_model_stays_healthy(
    tmp_path: Path, key: ed25519.Ed25519PrivateKey, artifacts: artifact_server.ArtifactServer
) -> None:
    dev, _, _ = serving_v1(tmp_path, key, artifacts)
    url = f"{dev.url}/v1/models/demo:predict"
    try:
        got: dict[str, tuple[int, str]] = {}
        for name, (body, headers, _) in MALFORMED.items():
            status, doc = post(url, body, {"Content-Type": "application/octet-stream", **headers})
            got[name] = (status, doc["error"]["class"] if isinstance(doc, dict) else repr(doc))
        for name, (body, _) in MALFORMED_JSON.items():
            status, doc = post(url, body, {"Content-Type": "application/json"})
            got[f"json {name}"] = (status, doc["error"]["class"] if isinstance(doc, dict) else repr(doc))
        tried["malformed requests"] += len(got)
        want = {name: (400, kind) for name, (_, _, kind) in MALFORMED.items()}
        want |= {f"json {name}": (400, kind) for name, (_, kind) in MALFORMED_JSON.items()}
        assert got == want
        # A good binary request still works, and the client errors above left the model's health untouched.
        x = np.asarray(POSITIVE, dtype="<f4")
        status, _ = post(url, x.tobytes(), {"Content-Type": "application/octet-stream", "X-Edgefleet-Shape": "1,4"})
        assert status == 200
        assert "Traceback" not in dev.log_text()
        assert dev.alive()
    finally:
        dev.stop()


# --- case 4: a client cannot roll back a healthy version on probation -----------------------------------------------


def test_client_errors_and_nan_inputs_do_not_roll_back_a_good_version(
    tmp_path: Path, key: ed25519.Ed25519PrivateKey, artifacts: artifact_server.ArtifactServer
) -> None:
    probation = HealthSpec(latency_p95_ms=1000.0, max_error_rate=0.01, min_samples=20, window_seconds=4)
    dev, _, _ = serving_v1(tmp_path, key, artifacts)
    url = f"{dev.url}/v1/models/demo:predict"
    try:
        v2 = onnx_models.make_bundle(key, "demo", "2.0.0")
        url2 = artifacts.publish(v2.filename, v2.data)
        dev.desired.write_text(spec_json([desired(v2, url2, health=probation)]))
        wait_for(lambda: dev.model().get("activeVersion") == "2.0.0", what="v2 on probation")
        hostile = [
            json.dumps({"inputs": {"x": [[float("nan"), 1.0, 1.0, 1.0]]}}, allow_nan=True).encode(),
            b'{"inputs":{"x":[[1,2,3]]}}',
            b'{"inputs":{"nope":[[1,2,3,4]]}}',
            b'{"inputs":{"x":[["a",1,1,1]]}}',
        ]
        for _ in range(10):
            for body in hostile:
                post(url, body, {"Content-Type": "application/json"})
                tried["probation attacks"] += 1
            for _ in range(3):
                status, _ = predict(dev, POSITIVE)
                assert status == 200
        # Probation (4 s) ends with the version confirmed: nothing the clients did counted against it.
        wait_for(lambda: "passed probation" in (dev.model().get("message") or ""), timeout=30, what="confirmed")
        assert dev.model()["activeVersion"] == "2.0.0" and dev.model()["state"] == "Active"
    finally:
        dev.stop()


def test_a_model_that_makes_nan_from_finite_inputs_is_still_rolled_back(
    tmp_path: Path, key: ed25519.Ed25519PrivateKey, artifacts: artifact_server.ArtifactServer
) -> None:
    """The other side of the rule: the ``nan`` variant turns finite negative inputs into NaN (its own fault)."""
    probation = HealthSpec(latency_p95_ms=1000.0, max_error_rate=0.01, min_samples=5, window_seconds=30)
    dev, _, _ = serving_v1(tmp_path, key, artifacts)
    try:
        bad = onnx_models.make_bundle(key, "demo", "2.0.0", "nan")
        dev.desired.write_text(spec_json([desired(bad, artifacts.publish(bad.filename, bad.data), health=probation)]))
        wait_for(lambda: dev.model().get("activeVersion") == "2.0.0", what="nan variant switched")
        predict(dev, [[-1.0, 0.5, 0.5, 0.5]])
        wait_for(lambda: dev.model().get("state") == "RolledBack", what="rolled back")
        assert dev.model()["activeVersion"] == "1.0.0"
    finally:
        dev.stop()


# --- cases 6 and 7: the address policy on the device, refused specs in status ---------------------------------------


def test_a_refused_spec_is_reported_in_status_and_the_device_keeps_serving(
    tmp_path: Path, key: ed25519.Ed25519PrivateKey, artifacts: artifact_server.ArtifactServer
) -> None:
    dev, v1, url = serving_v1(tmp_path, key, artifacts)
    port = url.split(":")[2].split("/")[0]
    try:
        for uri in (
            f"http://0x7f000001:{port}/{v1.filename}",
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/x",
            f"http://u:p@127.0.0.1:{port}/x",
            f"http://[::ffff:127.0.0.1]:{port}/x",
        ):
            tried["refused specs (agent process)"] += 1
            entry = desired(v1, url, health=HEALTH).to_wire()
            entry["artifact"]["uri"] = uri
            entry["version"] = "2.0.0"
            dev.desired.write_text(json.dumps({"models": [entry]}))
            stalled = wait_for(
                lambda: dev.condition("Stalled").get("reason") == "SpecRefused" and dev.condition("Stalled"),
                what=f"refusal of {uri}",
            )
            assert "spec.models[0].artifact.uri" in stalled["message"] or "models[0].artifact.uri" in stalled["message"]
            assert dev.condition("Ready")["status"] == "False"
            status, body = predict(dev, POSITIVE)
            assert status == 200 and body["model"]["version"] == "1.0.0"
            dev.desired.write_text(spec_json([desired(v1, url, health=HEALTH)]))
            wait_for(lambda: dev.condition("Ready").get("status") == "True", what="accepted again")
        # YAML that is not a spec at all, and a file over the size limit: refused the same way.
        for raw in (b"models: [", b"models:\n" + b"  - " * 1 + b"[" * 100_000):
            tried["refused specs (agent process)"] += 1
            dev.desired.write_bytes(raw)
            wait_for(lambda: dev.condition("Stalled").get("reason") == "SpecRefused", what="bad yaml refused")
            assert dev.alive()
        assert dev.model()["activeVersion"] == "1.0.0"
    finally:
        dev.stop()


def test_downloads_refuse_loopback_names_unless_allowed(
    tmp_path: Path, key: ed25519.Ed25519PrivateKey, artifacts: artifact_server.ArtifactServer
) -> None:
    """Connect-time policy on a real agent without the harness's allowance: ``localhost`` resolves to loopback."""
    import os

    v1 = onnx_models.make_bundle(key, "demo", "1.0.0")
    url = artifacts.publish(v1.filename, v1.data).replace("127.0.0.1", "localhost")
    dev = AgentProcess(tmp_path / "device", key.public_key())
    dev.desired.write_text(spec_json([desired(v1, url, health=HEALTH)]))
    env = {k: v for k, v in os.environ.items() if k != "EDGEFLEET_FETCH_ALLOW"}
    dev.start(env=env)
    tried["refused fetch targets"] += 1
    try:
        model = wait_for(lambda: dev.model().get("state") == "Failed" and dev.model(), what="refused")
        assert model["message"].startswith("ForbiddenAddress:"), model
        assert "sha256" not in model["message"] and "bytes" not in model["message"]
        assert not [r for r in artifacts.requests if r.path.endswith(v1.filename)]  # nothing was ever sent
        assert dev.alive()
    finally:
        dev.stop()


def test_base64_helper_is_sound() -> None:
    # The binary requests above use little-endian float32; make sure the helper's encoding matches the server's.
    assert base64.b64encode(np.float32(1.0).tobytes()) == b"AACAPw=="
