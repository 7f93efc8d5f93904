"""Where the API server is and how to authenticate: kubeconfig, in-cluster service account, or a plain endpoint.

A :class:`Connection` comes from a kubeconfig (client certificates, CA data, bearer tokens), the pod's service
account, or a plain-HTTP endpoint without credentials, which is what KubeEdge's MetaServer offers on an edge node
(``http://127.0.0.1:10550``). :func:`default` picks the first that exists, as kubectl and kopf do. Anything that
cannot be loaded is an :class:`~edgefleet.core.errors.InvalidSpecError` with reason ``InvalidConfig`` naming the file
and what to fix.

One pooled aiohttp session per process (:func:`new_session`) is shared by every client of that process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from edgefleet.core import errors

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
METASERVER = "http://127.0.0.1:10550"
Session = aiohttp.ClientSession  # so callers can type a shared session without importing aiohttp


def _invalid(message: str) -> errors.InvalidSpecError:
    return errors.InvalidSpecError(message, errors.Reason.INVALID_CONFIG)


@dataclasses.dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate. ``token_file`` is re-read (bound tokens rotate)."""

    server: str
    ssl_context: ssl.SSLContext | None = None
    token: str | None = None
    token_file: Path | None = None
    namespace: str = "default"
    impersonate_user: str | None = None  # act as this user (needs the "impersonate" verb), e.g. in RBAC tests

    def bearer(self) -> str | None:
        if self.token_file is not None:
            try:
                return self.token_file.read_text().strip()
            except OSError as exc:
                raise errors.TransientError(f"cannot read the service-account token {self.token_file}: {exc}") from exc
        return self.token


def plain(server: str = METASERVER, namespace: str = "default") -> Connection:
    """A plain-HTTP endpoint without credentials (KubeEdge MetaServer, ``kubectl proxy``)."""
    return Connection(server=server.rstrip("/"), namespace=namespace)


def in_cluster(root: Path = SERVICE_ACCOUNT) -> Connection:
    """The pod's service account: ``KUBERNETES_SERVICE_HOST``/``_PORT``, its CA, token and namespace."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not (root / "token").exists():
        raise _invalid(
            f"not running in a pod: KUBERNETES_SERVICE_HOST or {root / 'token'} is missing; "
            "configure a kubeconfig or a plain endpoint instead"
        )
    context = ssl.create_default_context(cafile=str(root / "ca.crt"))
    namespace = (root / "namespace").read_text().strip() if (root / "namespace").exists() else "default"
    if ":" in host:
        host = f"[{host}]"
    return Connection(f"https://{host}:{port}", context, token_file=root / "token", namespace=namespace)


def _data_or_file(entry: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        return (base / str(entry[key])).read_bytes()
    return None


def from_kubeconfig(path: Path, context: str | None = None) -> Connection:
    """Load a kubeconfig (safe YAML): server, CA, client certificate/key, bearer token, namespace."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise _invalid(f"{path}: cannot read the kubeconfig: {exc}") from exc

    def named(section: str, name: str) -> dict[str, Any]:
        for item in doc.get(section) or []:
            if item.get("name") == name:
                return dict(item.get(section[:-1]) or {})
        raise _invalid(f"{path}: {section} has no entry named {name!r}")

    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise _invalid(f"{path}: no current-context; pass a context name")
    ctx = named("contexts", ctx_name)
    cluster = named("clusters", ctx["cluster"])
    user = named("users", ctx["user"]) if ctx.get("user") else {}
    base = path.parent
    server = str(cluster["server"]).rstrip("/")
    ssl_context: ssl.SSLContext | None = None
    try:
        if server.startswith("https://"):
            ssl_context = _tls(cluster, user, base)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise _invalid(f"{path}: cannot load the TLS credentials of context {ctx_name!r}: {exc}") from exc
    token = user.get("token")
    token_file = Path(base / user["tokenFile"]) if user.get("tokenFile") else None
    return Connection(server, ssl_context, token, token_file, ctx.get("namespace") or "default")


def _tls(cluster: Mapping[str, Any], user: Mapping[str, Any], base: Path) -> ssl.SSLContext:
    ca = _data_or_file(cluster, "certificate-authority", base)
    context = ssl.create_default_context(cadata=ca.decode() if ca else None)
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert = _data_or_file(user, "client-certificate", base)
    key = _data_or_file(user, "client-key", base)
    if cert and key:
        # ssl only loads certificate chains from files: write them to a private directory, load, delete.
        with tempfile.TemporaryDirectory(prefix="edgefleet-kube-") as tmp:
            cert_path, key_path = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            for p, data in ((cert_path, cert), (key_path, key)):
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            context.load_cert_chain(str(cert_path), str(key_path))
    return context


def default(kubeconfig: Path | str | None = None, context: str | None = None) -> Connection:
    """``kubeconfig`` when given, else the pod's service account, else ``$KUBECONFIG`` or ``~/.kube/config``."""
    try:
        if kubeconfig:
            return from_kubeconfig(Path(kubeconfig), context)
        with contextlib.suppress(errors.InvalidSpecError):
            return in_cluster()
        fallback = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(Path.home() / ".kube" / "config")
        return from_kubeconfig(Path(fallback), context)
    except errors.InvalidSpecError as exc:
        raise _invalid(
            f"no Kubernetes credentials: {exc}; run in a pod with a ServiceAccount or set KUBECONFIG"
        ) from exc


def new_session(limit: int = 0) -> aiohttp.ClientSession:
    """One pooled session per process; every Client (every simulated device) can share it.

    ``limit`` 0 means no cap on open connections: each watch holds one connection for its whole life, so a process
    simulating N devices needs N of them plus a few for requests (a cap would starve watches silently).
    """
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, keepalive_timeout=60))


async def close_session(session: aiohttp.ClientSession) -> None:
    """Close a session gracefully: TLS connections finish their shutdown during the short pause (aiohttp's
    documented graceful shutdown), so no transport is left for the garbage collector."""
    await session.close()
    await asyncio.sleep(0.25)


__all__ = [
    "METASERVER",
    "Connection",
    "Session",
    "close_session",
    "default",
    "from_kubeconfig",
    "in_cluster",
    "new_session",
    "plain",
]
