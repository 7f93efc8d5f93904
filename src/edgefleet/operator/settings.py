"""The operator's settings: every ``EDGEFLEET_*`` environment variable, read once into :class:`OperatorSettings`.

* ``EDGEFLEET_STORE_DIR`` (``/var/lib/edgefleet/artifacts``): where the artifact store keeps bundles;
* ``EDGEFLEET_STORE_URL`` (``http://127.0.0.1:<port>``): the store's URL as devices reach it;
* ``EDGEFLEET_STORE_HOST`` (``0.0.0.0``) and ``EDGEFLEET_STORE_PORT`` (``8080``): where the store (and ``/metrics``)
  listens;
* ``EDGEFLEET_ARTIFACT_BACKEND`` (``embedded``): ``oci`` pushes each signed bundle to an OCI registry as an artifact
  (devices pull it by digest) instead of serving it from the embedded store;
* ``EDGEFLEET_OCI_REPOSITORY`` (for ``oci``): ``host[:port]/prefix``; a model's bundles go to ``<prefix>/<model>``;
* ``EDGEFLEET_OCI_SECRET`` (none): ``namespace/name`` of the registry credentials (a ``kubernetes.io/dockerconfigjson``
  or ``kubernetes.io/basic-auth`` Secret); ``EDGEFLEET_OCI_CA_FILE`` (none): a PEM CA to trust besides the system
  roots; ``EDGEFLEET_OCI_PLAIN_HTTP`` (``false``): speak plain HTTP to the registry;
* ``EDGEFLEET_SIGNING_SECRET`` (``edgefleet-system/edgefleet-signing-key``): the Secret with the ed25519 signing key;
* ``EDGEFLEET_COMPILER`` (the optimising compiler) as ``module:function``, ``EDGEFLEET_COMPILE_WORKERS`` (``1``);
* ``EDGEFLEET_COMPILE_MEMORY_BYTES`` (``3Gi``): the resident memory one compile may use; the worker stops a compile
  that exceeds it (Stalled, reason ``CompileMemoryExceeded``). Give the operator pod a limit of at least
  ``COMPILE_WORKERS`` times this plus ~20 %;
* ``EDGEFLEET_BENCHMARK_DEVICES`` (``2``): devices per hardware class asked to time candidates when the compile host is
  not of a target's class (``0``: never ask, ship FP32), ``EDGEFLEET_BENCHMARK_TIMEOUT_SECONDS`` (``300``): how long
  a compile waits for their numbers;
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
from edgefleet.compiler import memory
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
    compile_memory_bytes: int = 3 * 1024**3
    benchmark_devices: int = 2
    benchmark_timeout_seconds: float = 300.0
    resync_seconds: float = 10.0
    react_seconds: float = 1.0
    watch_devices: bool = True
    kubeconfig: str | None = None
    artifact_backend: str = "embedded"
    oci_repository: str | None = None
    oci_secret: str | None = None
    oci_ca_file: Path | None = None
    oci_plain_http: bool = False
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
        backend = env.get(PREFIX + "ARTIFACT_BACKEND", cls.artifact_backend)
        if backend not in ("embedded", "oci"):
            raise errors.InvalidSpecError(
                f"{PREFIX}ARTIFACT_BACKEND: {backend!r} is not embedded or oci", errors.Reason.INVALID_CONFIG
            )
        repository = env.get(PREFIX + "OCI_REPOSITORY") or None
        if backend == "oci" and repository is None:
            raise errors.InvalidSpecError(
                f"{PREFIX}ARTIFACT_BACKEND=oci needs {PREFIX}OCI_REPOSITORY (host[:port]/prefix)",
                errors.Reason.INVALID_CONFIG,
            )
        secret = env.get(PREFIX + "OCI_SECRET") or None
        if secret is not None and "/" not in secret:
            raise errors.InvalidSpecError(
                f"{PREFIX}OCI_SECRET: {secret!r} is not namespace/name", errors.Reason.INVALID_CONFIG
            )
        ca_file = env.get(PREFIX + "OCI_CA_FILE") or None
        return cls(
            store_dir=Path(env.get(PREFIX + "STORE_DIR", str(cls.store_dir))),
            store_url=env.get(PREFIX + "STORE_URL", f"http://127.0.0.1:{port}"),
            store_host=env.get(PREFIX + "STORE_HOST", cls.store_host),
            store_port=port,
            signing_secret=env.get(PREFIX + "SIGNING_SECRET", cls.signing_secret),
            compiler=env.get(PREFIX + "COMPILER", cls.compiler),
            compile_workers=_number(env, "COMPILE_WORKERS", int, cls.compile_workers, "a number of processes"),
            compile_memory_bytes=_bytes(env, "COMPILE_MEMORY_BYTES", cls.compile_memory_bytes),
            benchmark_devices=_number(env, "BENCHMARK_DEVICES", int, cls.benchmark_devices, "a number of devices"),
            benchmark_timeout_seconds=_number(
                env, "BENCHMARK_TIMEOUT_SECONDS", float, cls.benchmark_timeout_seconds, "a number of seconds"
            ),
            resync_seconds=_number(env, "RESYNC_SECONDS", float, cls.resync_seconds, "a number of seconds"),
            react_seconds=_number(env, "REACT_SECONDS", float, cls.react_seconds, "a number of seconds"),
            watch_devices=env.get(PREFIX + "WATCH_DEVICES", "true").lower() not in _FALSE,
            kubeconfig=env.get("KUBECONFIG") or None,
            artifact_backend=backend,
            oci_repository=repository,
            oci_secret=secret,
            oci_ca_file=Path(ca_file) if ca_file else None,
            oci_plain_http=env.get(PREFIX + "OCI_PLAIN_HTTP", "false").lower() in ("1", "true", "yes"),
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


def _bytes(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(PREFIX + key)
    if raw is None:
        return default
    try:
        value = memory.parse_bytes(raw)
    except ValueError:
        value = -1
    if value < memory.MIN_BUDGET_BYTES:
        raise errors.InvalidSpecError(
            f"{PREFIX}{key}: {raw!r} is not a size of at least 256Mi (e.g. 3Gi or 3221225472)",
            errors.Reason.INVALID_CONFIG,
        )
    return value


__all__ = ["PREFIX", "OperatorSettings"]
