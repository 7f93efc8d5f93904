"""The operator's settings: every ``EDGEFLEET_*`` environment variable, read once into :class:`OperatorSettings`.

* ``EDGEFLEET_STORE_DIR`` (``/var/lib/edgefleet/artifacts``): where the artifact store keeps bundles;
* ``EDGEFLEET_STORE_URL`` (``http://127.0.0.1:<port>``): the store's URL as devices reach it;
* ``EDGEFLEET_STORE_HOST`` (``0.0.0.0``) and ``EDGEFLEET_STORE_PORT`` (``8080``): where the store (and ``/metrics``)
  listens;
* ``EDGEFLEET_SIGNING_SECRET`` (``edgefleet-system/edgefleet-signing-key``): the Secret with the ed25519 signing key;
* ``EDGEFLEET_COMPILER`` (the optimising compiler) as ``module:function``, ``EDGEFLEET_COMPILE_WORKERS`` (``1``);
* ``EDGEFLEET_RESYNC_SECONDS`` (``10``): the resync timer, the safety net;
* ``EDGEFLEET_REACT_SECONDS`` (``1``): at most one device-triggered reconcile per deployment this often;
* ``EDGEFLEET_WATCH_DEVICES`` (``true``): watch EdgeDevices; ``false`` lists them on every reconcile;
* ``EDGEFLEET_WRITEBACK_REPOSITORY`` (unset: off): the fleet repository the revert of an automatic abort is pushed to
  (:mod:`edgefleet.adapters.gitwriteback`), with ``EDGEFLEET_WRITEBACK_BRANCH`` (``main``, the base branch),
  ``EDGEFLEET_WRITEBACK_PATH`` (``""``, the manifests' directory), and for a pull request ``EDGEFLEET_WRITEBACK_TOKEN``,
  ``EDGEFLEET_WRITEBACK_FORGE_API`` (e.g. ``https://gitea.example.com/api/v1``) and ``EDGEFLEET_WRITEBACK_FORGE_REPO``
  (``owner/name``);
* ``KUBECONFIG`` (the pod's service account): the cluster to talk to.

A value that does not parse is an ``InvalidSpecError`` (reason ``InvalidConfig``) naming the variable, so the
operator refuses to start rather than run with a setting nobody chose.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from edgefleet.adapters import gitwriteback
from edgefleet.core import errors
from edgefleet.operator import compilation

PREFIX = "EDGEFLEET_"
_FALSE = ("0", "false", "no")


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    """Operator settings (see the module docstring for the variables and defaults)."""

    store_dir: Path = Path("/var/lib/edgefleet/artifacts")
    store_url: str = "http://127.0.0.1:8080"
    store_host: str = "0.0.0.0"
    store_port: int = 8080
    signing_secret: str = "edgefleet-system/edgefleet-signing-key"
    compiler: str = compilation.DEFAULT_COMPILER
    compile_workers: int = 1
    resync_seconds: float = 10.0
    react_seconds: float = 1.0
    watch_devices: bool = True
    kubeconfig: str | None = None
    write_back: gitwriteback.Config | None = None

    @property
    def signing_secret_ref(self) -> tuple[str, str]:
        """``signing_secret`` as (namespace, name)."""
        namespace, _, name = self.signing_secret.partition("/")
        return namespace, name

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OperatorSettings:
        """Read the settings from ``env`` (``os.environ``), once.

        >>> s = OperatorSettings.from_env({"EDGEFLEET_STORE_PORT": "9090", "EDGEFLEET_WATCH_DEVICES": "false"})
        >>> s.store_url, s.watch_devices, s.resync_seconds
        ('http://127.0.0.1:9090', False, 10.0)
        >>> OperatorSettings.from_env({"EDGEFLEET_RESYNC_SECONDS": "soon"})
        Traceback (most recent call last):
        ...
        edgefleet.core.errors.InvalidSpecError: EDGEFLEET_RESYNC_SECONDS: 'soon' is not a number of seconds
        """
        port = _number(env, "STORE_PORT", int, cls.store_port, "a port number")
        return cls(
            store_dir=Path(env.get(PREFIX + "STORE_DIR", str(cls.store_dir))),
            store_url=env.get(PREFIX + "STORE_URL", f"http://127.0.0.1:{port}"),
            store_host=env.get(PREFIX + "STORE_HOST", cls.store_host),
            store_port=port,
            signing_secret=env.get(PREFIX + "SIGNING_SECRET", cls.signing_secret),
            compiler=env.get(PREFIX + "COMPILER", cls.compiler),
            compile_workers=_number(env, "COMPILE_WORKERS", int, cls.compile_workers, "a number of processes"),
            resync_seconds=_number(env, "RESYNC_SECONDS", float, cls.resync_seconds, "a number of seconds"),
            react_seconds=_number(env, "REACT_SECONDS", float, cls.react_seconds, "a number of seconds"),
            watch_devices=env.get(PREFIX + "WATCH_DEVICES", "true").lower() not in _FALSE,
            kubeconfig=env.get("KUBECONFIG") or None,
            write_back=_write_back(env),
        )


N = TypeVar("N", int, float)


def _write_back(env: Mapping[str, str]) -> gitwriteback.Config | None:
    repository = env.get(PREFIX + "WRITEBACK_REPOSITORY", "").strip()
    if not repository:
        return None
    return gitwriteback.Config(
        repository=repository,
        branch=env.get(PREFIX + "WRITEBACK_BRANCH", "main") or "main",
        path=env.get(PREFIX + "WRITEBACK_PATH", ""),
        token=env.get(PREFIX + "WRITEBACK_TOKEN") or None,
        forge_api=env.get(PREFIX + "WRITEBACK_FORGE_API") or None,
        forge_repo=env.get(PREFIX + "WRITEBACK_FORGE_REPO") or None,
    )


def _number(env: Mapping[str, str], key: str, kind: type[N], default: N, what: str) -> N:
    raw = env.get(PREFIX + key)
    if raw is None:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise errors.InvalidSpecError(f"{PREFIX}{key}: {raw!r} is not {what}", errors.Reason.INVALID_CONFIG) from None


__all__ = ["PREFIX", "OperatorSettings"]
