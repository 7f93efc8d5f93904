"""One address policy: the real API server's CEL rule and the pydantic models accept exactly the same artifact URIs
(issue 18, cases 6 and 7: what the API server accepts, the agent parses; what a client reads as a metadata address,
neither accepts)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from edgefleet.api.edgedevice import EdgeDeviceSpec
from edgefleet.testing.badinput import COUNTS as tried
from edgefleet.testing.controlplane import ControlPlane

pytestmark = pytest.mark.controlplane

DIGEST = "sha256:" + "a" * 64
# (uri, accepted): every bypass of the issue, their neighbours, and ordinary URIs that must keep working.
URIS: list[tuple[str, bool]] = [
    ("http://0xa9fea9fe/x", False),
    ("http://0xa9.0xfe.0xa9.0xfe/x", False),
    ("http://0251.0376.0251.0376/x", False),
    ("http://2852039166/x", False),
    ("http://169.254.169.254./x", False),
    ("http://[::ffff:169.254.169.254]/x", False),
    ("http://[::ffff:a9fe:a9fe]/x", False),
    ("http://[0:0:0:0:0:FFFF:a9fe:a9fe]/x", False),
    ("http://169\u3002254\u3002169\u3002254/x", False),
    ("http://169\uff0e254\uff0e169\uff0e254/x", False),
    ("http://[fd00:ec2::254]/x", False),
    ("http://[fe90::1]/x", False),
    ("http://[fe80::1%25eth0]/x", False),
    ("http://0x7f000001:8080/x", False),
    ("http://169.254.169.254/latest/meta-data", False),
    ("http://169.254.170.2/v2/credentials", False),
    ("http://[fe80::1]/x", False),
    ("http://u:p@127.0.0.1/x", False),
    ("http://@127.0.0.1/x", False),
    ("http://evil.example\\@10.0.0.1/x", False),
    ("http://metadata.google.internal/x", False),
    ("http://METADATA.google.internal./x", False),
    ("http://0.0.0.0:8080/x", False),
    ("http://[::]/x", False),
    ("http://224.0.0.1/x", False),
    ("http://255.255.255.255/x", False),
    ("http://100.100.100.200/x", False),
    ("http://%31%36%39.254.169.254/x", False),
    ("http://store.example/%zz", False),
    ("http://store.example:80:80/x", False),
    ("http://127.0.0.1:8080/artifacts/x", True),
    ("http://[::1]:8080/x", True),
    ("http://10.1.2.3/x", True),
    ("http://192.168.7.9:9000/x", True),
    ("https://models.example.com/a.bundle?sig=a%2Fb", True),
    ("http://store_1.factory.internal:8080/x", True),
    ("http://xn--bcher-kva.example/x", True),
    ("http://[2001:db8::1]:443/x", True),
    ("http://[fd12:3456::1]/x", True),
    ("http://example.com./x", True),
]


def device(uri: str) -> dict[str, object]:
    return {
        "models": [
            {
                "name": "demo",
                "deployment": "demo",
                "version": "1.0.0",
                "revision": "r1",
                "artifact": {"uri": uri, "digest": DIGEST, "sizeBytes": 10, "precision": "fp32"},
            }
        ]
    }


def pydantic_accepts(uri: str) -> bool:
    try:
        EdgeDeviceSpec.model_validate(device(uri))
    except ValidationError:
        return False
    return True


def test_pydantic_refuses_every_bypass_and_keeps_ordinary_uris() -> None:
    got = {uri: pydantic_accepts(uri) for uri, _ in URIS}
    tried["address policy (pydantic)"] += len(URIS)
    assert got == dict(URIS)


def test_api_server_and_pydantic_accept_the_same_uris(control_plane: ControlPlane, namespace: str) -> None:
    items = [
        {
            "apiVersion": "edgefleet.io/v1alpha1",
            "kind": "EdgeDevice",
            "metadata": {"name": f"d{i}", "namespace": namespace},
            "spec": device(uri),
        }
        for i, (uri, _) in enumerate(URIS)
    ]
    accepted: dict[str, bool] = {}
    for item, (uri, _) in zip(items, URIS, strict=True):
        result = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(item), check=False)
        accepted[uri] = result.returncode == 0
        if not accepted[uri]:
            assert "spec.models[0].artifact.uri" in result.stderr, result.stderr
    tried["address policy (API server)"] += len(URIS)
    assert accepted == {uri: pydantic_accepts(uri) for uri, _ in URIS}
    assert accepted == dict(URIS)
