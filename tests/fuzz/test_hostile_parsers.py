"""Property-based fuzzing (Hypothesis) of every parser of untrusted bytes issue 18 names: bundle opening, the
manifest and its golden samples, inference requests and URI checks. Each property is "total": the parser returns or
raises its one typed rejection, never anything else, whatever the input.

``make test`` runs a brief pass (``EDGEFLEET_FUZZ_EXAMPLES``, default 150 per property); ``make fuzz`` a long one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import socket
import urllib.parse
from typing import Any

import numpy as np
import pytest
import yarl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edgefleet.adapters import bundle, inference_server, onnx_session
from edgefleet.api import addresses
from edgefleet.api.edgedevice import ArtifactRef
from edgefleet.core import golden
from edgefleet.testing import onnx_models
from edgefleet.testing.badinput import COUNTS as tried

EXAMPLES = int(os.environ.get("EDGEFLEET_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="EDGEFLEET_FUZZ_EXAMPLES" not in os.environ,  # make test: reproducible; make fuzz: explores
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KEY = bundle.generate_key()
TRUSTED = [KEY.public_key()]
GOOD_DIGEST, GOOD = bundle.build(onnx_models.manifest_for("demo", "1.0.0"), onnx_models.model_bytes(), KEY)
RUNTIME = onnx_session.ModelRuntime(onnx_models.model_bytes())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=10), inner, max_size=6),
    max_leaves=40,
)
tensorish = st.fixed_dictionaries(
    {},
    optional={
        "dtype": st.sampled_from(["float32", "float64", "int64", "bool", "U1", "O", "V0", "<f4", "", "foo"])
        | st.integers(),
        "shape": st.lists(st.integers(-3, 10**13), max_size=5) | json_values,
        "data": st.binary(max_size=64).map(lambda b: __import__("base64").b64encode(b).decode()) | json_values,
    },
)


@FUZZ
@given(
    edits=st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(0, len(GOOD))),
)
def test_open_bundle_on_mutated_bytes_raises_only_bundle_error(edits: list[tuple[int, int]], cut: int | None) -> None:
    tried["fuzzed bundles"] += 1
    data = bytearray(GOOD)
    for offset, value in edits:
        data[offset] = value
    mutated = bytes(data[:cut] if cut is not None else data)
    try:
        opened = bundle.open_bundle(mutated, TRUSTED)
    except bundle.BundleError:
        return
    assert mutated == GOOD and opened.digest == GOOD_DIGEST


@FUZZ
@given(manifest=json_values, golden=json_values, sample=tensorish, raw=st.binary(max_size=256))
def test_manifest_parsing_is_total(manifest: Any, golden: Any, sample: Any, raw: bytes) -> None:
    tried["fuzzed manifests"] += 1
    pinned = {"files": {"model.onnx": {"sha256": "0" * 64, "size": 1}}}
    candidates = [
        raw,
        json.dumps(manifest).encode(),
        json.dumps({**pinned, "golden": golden}).encode(),
        json.dumps({**pinned, "model": manifest}).encode(),
        json.dumps({**pinned, "golden": {"samples": [{"inputs": {"x": sample}, "outputs": {"y": sample}}]}}).encode(),
    ]
    for candidate in candidates:
        try:
            _, parsed = bundle.parse_manifest(candidate)
        except bundle.BundleError:
            continue
        assert isinstance(parsed, bundle.Manifest)
        if isinstance(parsed.golden, bundle.GoldenMember):  # tensors live in golden.bin (its property is below)
            continue
        for item in parsed.golden.samples:
            for tensor in [*item.inputs.values(), *item.outputs.values()]:
                with contextlib.suppress(bundle.BundleError):
                    tensor.array()


@settings(FUZZ, max_examples=max(10, EXAMPLES // 3))
@given(
    sample=tensorish,
    rtol=st.floats(allow_nan=False) | st.integers(),
    names=st.sampled_from(["x", "y", "nope"]),
    extra=json_values,
)
def test_signed_bundles_with_hostile_golden_samples_never_raise(sample: Any, rtol: Any, names: str, extra: Any) -> None:
    """Signed with the trusted key: verification passes, so the typed manifest and the smoke test must be total."""
    tried["fuzzed signed bundles"] += 1
    manifest = onnx_models.manifest_for("demo", "2.0.0")
    manifest["golden"] = {"samples": [{"inputs": {names: sample}, "outputs": {"y": sample}}], "rtol": rtol}
    manifest["extra"] = extra
    try:
        digest, data = _signed_unchecked(manifest, {bundle.MODEL: onnx_models.model_bytes("good", "2.0.0")})
    except ValueError:  # rtol=inf cannot be written as canonical JSON at all
        return
    try:
        opened = bundle.open_bundle(data, TRUSTED, digest)
    except bundle.BundleError:
        return
    try:
        samples = bundle.golden_samples(opened)
    except bundle.BundleError:
        return
    problem = RUNTIME.check_golden(samples)
    assert problem is None or isinstance(problem, str)


@settings(FUZZ, max_examples=max(10, EXAMPLES // 3))
@given(
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 4096)),
    entry=st.one_of(st.none(), json_values),
)
def test_signed_bundles_with_hostile_golden_members_never_raise(
    edits: list[tuple[int, int]], cut: int | None, entry: Any
) -> None:
    """A signed schema-2 bundle whose golden.bin (or its description) is hostile: decoding and the smoke test are
    total (only BundleError, or a returned problem)."""
    tried["fuzzed golden members"] += 1
    described, member = GOLDEN_MEMBER
    raw = bytearray(member)
    for offset, value in edits:
        raw[offset % len(raw)] = value
    manifest = onnx_models.manifest_for("demo", "2.0.0")
    manifest["golden"] = entry if entry is not None else described
    members = {bundle.MODEL: onnx_models.model_bytes("good", "2.0.0"), bundle.GOLDEN: bytes(raw[:cut])}
    digest, data = _signed_unchecked(manifest, members)
    try:
        opened = bundle.open_bundle(data, TRUSTED, digest)
        samples = bundle.golden_samples(opened)
    except bundle.BundleError:
        return
    problem = RUNTIME.check_golden(samples)
    assert problem is None or isinstance(problem, str)


def _golden_member() -> tuple[dict[str, Any], bytes]:
    """A well-formed golden.bin and its manifest entry for the demo model (one grid-coded input, one raw output)."""
    feed = np.linspace(0, 1, 4, dtype=np.float32).reshape(1, 4)
    layout, snapped = golden.snap(feed)
    inp = dataclasses.replace(layout, name=RUNTIME.inputs[0].name)
    out_name = next(iter(RUNTIME.run({inp.name: snapped})))
    out = RUNTIME.run({inp.name: snapped})[out_name]
    described, member = golden.encode(
        [[(inp, snapped), (golden.Layout(out_name, str(out.dtype), tuple(out.shape)), out)]], [1]
    )
    return {"member": bundle.GOLDEN, "samples": described, "rtol": 1e-4, "atol": 1e-5}, member


def _signed_unchecked(manifest: dict[str, Any], members: dict[str, bytes]) -> tuple[str, bytes]:
    return onnx_models.signed_unchecked(manifest, members, KEY)


GOLDEN_MEMBER = _golden_member()


@dataclasses.dataclass(frozen=True)
class _Served:
    name: str = "demo"
    version: str = "1.0.0"
    digest: str = GOOD_DIGEST
    revision: str = "r1"
    runtime: onnx_session.ModelRuntime = RUNTIME


SERVED = _Served()


def _client_rejection(exc: BaseException) -> bool:
    if isinstance(exc, inference_server.BadRequest):
        return True
    return isinstance(exc, onnx_session.InferenceError) and exc.client_error


@FUZZ
@given(body=json_values, raw=st.binary(max_size=128), depth=st.integers(0, 3000))
def test_json_request_parsing_is_total(body: Any, raw: bytes, depth: int) -> None:
    tried["fuzzed requests"] += 1
    for candidate in (
        raw,
        json.dumps(body).encode(),
        json.dumps({"inputs": {"x": body}}).encode(),
        b'{"inputs":{"x":' + b"[" * depth + b"1" + b"]" * depth + b"}}",
    ):
        try:
            feeds, _ = inference_server._json_inputs(candidate, SERVED)
        except Exception as exc:
            assert _client_rejection(exc), repr(exc)
            continue
        for name, array in feeds.items():
            assert isinstance(array, np.ndarray) and name == "x"


@FUZZ
@given(
    headers=st.dictionaries(
        st.sampled_from(["X-Edgefleet-Input", "X-Edgefleet-Dtype", "X-Edgefleet-Shape", "X-Edgefleet-Output"]),
        st.text(max_size=30) | st.sampled_from(["float32", "1,4", "2,4", "x", "y", "U1", "O", "1,-4", "0,4"]),
    ),
    body=st.binary(max_size=64),
)
def test_binary_request_parsing_is_total(headers: dict[str, str], body: bytes) -> None:
    tried["fuzzed requests"] += 1
    try:
        feeds = inference_server._binary_inputs(headers, body, SERVED)
    except Exception as exc:
        assert _client_rejection(exc), repr(exc)
        return
    (array,) = feeds.values()
    assert array.dtype == np.float32 and array.ndim == 2 and array.shape[1] == 4


def _octets(value: int) -> list[str]:
    return [str((value >> s) & 255) for s in (24, 16, 8, 0)]


numbers = st.integers(0, 2**32 - 1)
hosts = st.one_of(
    numbers.map(lambda v: ".".join(_octets(v))),
    numbers.map(str),
    numbers.map(hex),
    numbers.map(lambda v: ".".join(hex(int(o)) for o in _octets(v))),
    numbers.map(lambda v: ".".join("0" + oct(int(o))[2:] for o in _octets(v))),
    numbers.map(lambda v: "\u3002".join(_octets(v))),
    numbers.map(lambda v: "\uff0e".join(_octets(v))),
    numbers.map(lambda v: ".".join(_octets(v)) + "."),
    numbers.map(lambda v: f"[::ffff:{'.'.join(_octets(v))}]"),
    st.integers(0, 2**128 - 1).map(lambda v: f"[{ipaddress.IPv6Address(v)}]"),
    st.integers(0, 2**128 - 1).map(lambda v: f"[{ipaddress.IPv6Address(v).exploded}]"),
    st.sampled_from(["[fe80::1%25eth0]", "metadata", "METADATA.google.internal.", "localhost", "xn--bcher-kva.ch"]),
    st.from_regex(r"[a-z0-9._%@:\[\]-]{1,20}", fullmatch=True),
    st.text(max_size=15),
)
uris = st.builds(
    lambda scheme, auth, host, port, path: f"{scheme}://{auth}{host}{port}{path}",
    st.sampled_from(["http", "https", "oci", "HTTP", "ftp"]),
    st.sampled_from(["", "", "", "u:p@", "@", "a@b@"]),
    hosts,
    st.sampled_from(["", ":80", ":8080", ":99999", ":x"]),
    st.sampled_from(["/", "/a.bundle", "/%zz", "/a?b=%2F", "", "#f"]),
)


def _client_addresses(uri: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address an HTTP client could read the host of ``uri`` as, without resolving names."""
    seen: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for host in (_yarl_host(uri), _urllib_host(uri)):
        if not host:
            continue
        try:
            seen.append(ipaddress.ip_address(host.strip("[]")))
            continue
        except ValueError:
            pass
        with contextlib.suppress(OSError, ValueError):  # getaddrinfo's numeric forms (inet_aton: hex, octal...)
            seen.append(ipaddress.ip_address(socket.inet_aton(host.rstrip("."))))
    return seen


def _yarl_host(uri: str) -> str | None:
    try:
        return yarl.URL(uri).host
    except (ValueError, TypeError):
        return None


def _urllib_host(uri: str) -> str | None:
    try:
        return urllib.parse.urlsplit(uri).hostname
    except ValueError:
        return None


@FUZZ
@given(uri=uris | st.text(max_size=40))
def test_an_accepted_uri_never_reaches_a_never_fetched_address(uri: str) -> None:
    tried["fuzzed URIs"] += 1
    try:
        addresses.check_uri(uri)
    except addresses.AddressError:
        accepted = False
    else:
        accepted = True
        for address in _client_addresses(uri):
            found = addresses.classify(address)
            assert found is None or not found[1], (uri, address, found)
    # The pydantic model applies the same policy (plus its own scheme/length rules, so it may refuse more).
    try:
        ArtifactRef(uri=uri, digest="sha256:" + "a" * 64, size_bytes=1, precision="fp32")
    except ValidationError:
        return
    assert accepted, uri


@pytest.mark.parametrize("uri", ["http://0xa9fea9fe/", "http://[::ffff:a9fe:a9fe]/", "http://169\u3002254.169.254/"])
def test_the_oracle_sees_the_bypasses(uri: str) -> None:
    """The property above can fail: its oracle reads the issue's bypasses as the metadata address."""
    assert any(addresses.classify(a) == ("link-local", True) for a in _client_addresses(uri))
