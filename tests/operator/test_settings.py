"""The operator's settings, read once from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.core import errors
from edgefleet.operator import compilation, settings


def test_defaults() -> None:
    s = settings.OperatorSettings.from_env({})
    assert s == settings.OperatorSettings()
    assert s.store_dir == Path("/var/lib/edgefleet/artifacts") and s.store_url == "http://127.0.0.1:8080"
    assert s.compiler == compilation.DEFAULT_COMPILER and s.watch_devices and s.kubeconfig is None
    assert s.signing_secret_ref == ("edgefleet-system", "edgefleet-signing-key")


def test_every_variable() -> None:
    env = {
        "EDGEFLEET_STORE_DIR": "/data",
        "EDGEFLEET_STORE_URL": "http://store.plant:80",
        "EDGEFLEET_STORE_HOST": "127.0.0.1",
        "EDGEFLEET_STORE_PORT": "9000",
        "EDGEFLEET_SIGNING_SECRET": "ops/key",
        "EDGEFLEET_COMPILER": "pkg.mod:fn",
        "EDGEFLEET_COMPILE_WORKERS": "3",
        "EDGEFLEET_RESYNC_SECONDS": "2.5",
        "EDGEFLEET_REACT_SECONDS": "0.5",
        "EDGEFLEET_WATCH_DEVICES": "No",
        "KUBECONFIG": "/home/me/.kube/config",
    }
    assert settings.OperatorSettings.from_env(env) == settings.OperatorSettings(
        store_dir=Path("/data"),
        store_url="http://store.plant:80",
        store_host="127.0.0.1",
        store_port=9000,
        signing_secret="ops/key",
        compiler="pkg.mod:fn",
        compile_workers=3,
        resync_seconds=2.5,
        react_seconds=0.5,
        watch_devices=False,
        kubeconfig="/home/me/.kube/config",
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [("EDGEFLEET_STORE_PORT", "http"), ("EDGEFLEET_COMPILE_WORKERS", "1.5"), ("EDGEFLEET_REACT_SECONDS", "")],
)
def test_a_value_that_does_not_parse_names_the_variable(key: str, value: str) -> None:
    with pytest.raises(errors.InvalidSpecError, match=key) as caught:
        settings.OperatorSettings.from_env({key: value})
    assert caught.value.reason is errors.Reason.INVALID_CONFIG
