"""A real OCI registry for tests and benchmarks: CNCF distribution (Debian's ``docker-registry`` 2.8) on 127.0.0.1.

    tls = registry.certificates(tmp / "tls")
    with registry.running(tmp / "origin", tls, auth=("edgefleet", "s3cret"), token_auth=True) as origin:
        with registry.running(tmp / "site-a", tls, proxy_of=origin) as cache:   # a per-site pull-through cache
            ...
            origin.served()    # {digest: Served(requests, bytes)} from the registry's own log

:func:`running` starts ``docker-registry serve <config>`` (installed by ``hack/install-registry.sh``, which the
fixture runs when the binary is missing) with TLS from a test CA (:func:`certificates`: ECDSA P-256, like the
control plane's) and, for an origin, htpasswd auth (bcrypt). With ``proxy_of`` it runs in proxy mode: a pull-through
cache of that origin, authenticating to it with the origin's credentials and trusting the test CA
(``SSL_CERT_FILE``). The registry's access log is JSON; :meth:`Registry.served` adds up the bytes each ``GET`` of a
blob or manifest wrote, so byte counts are what the registry process itself served.

Distribution 2.8's proxy, measured here: a blob missing from the cache is fetched from the origin twice for the
first request (once to store it, once to answer the request; v3 serves both from one fetch), and once more for every
request that arrives while the first fetch runs. Tests and the benchmark report what the origin's log shows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509

from edgefleet.testing import controlplane, tokenauth

SCRIPT = controlplane.REPO / "hack" / "install-registry.sh"
TEST_CREDENTIALS = ("edgefleet-ci", "not-in-any-log-7f3a9c")
"""The origin's htpasswd user in tests; tests assert the password (and its base64 form) never appears in a log,
an event or a status."""


class RegistryError(RuntimeError):
    """The registry could not be installed or started; the message has its log."""


def binary() -> Path:
    """The ``docker-registry`` binary (installed by the project's script when missing)."""
    override = os.environ.get("EDGEFLEET_REGISTRY_BIN")
    if override:
        return Path(override)
    found = shutil.which("docker-registry")
    if found and Path("/usr/sbin/nginx").exists():
        return Path(found)
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RegistryError(f"{SCRIPT} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


@dataclasses.dataclass(frozen=True)
class Certificates:
    """A test CA and one serving certificate for 127.0.0.1/localhost, as PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def certificates(directory: Path) -> Certificates:
    """Write a fresh CA and a serving certificate for ``127.0.0.1``/``localhost`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = controlplane._cert(controlplane._name("edgefleet-registry-ca"), None, ca=True)
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    serving = controlplane._cert(controlplane._name("127.0.0.1"), ca, ca=False, sans=sans)
    out = Certificates(directory / "ca.pem", directory / "registry.pem", directory / "registry-key.pem")
    out.ca_file.write_bytes(ca.cert_pem())
    out.cert_file.write_bytes(serving.cert_pem())
    out.key_file.write_bytes(serving.key_pem())
    return out


@dataclasses.dataclass(frozen=True)
class Served:
    """What a registry served for one digest: successful GET responses and the body bytes they wrote."""

    requests: int
    bytes: int


@dataclasses.dataclass
class Registry:
    """A running distribution instance (origin or pull-through cache)."""

    name: str
    root: Path
    port: int
    tls: Certificates
    auth: tuple[str, str] | None
    proxy_of: Registry | None
    token: tokenauth.TokenService | None = None
    """With a token service the registry wants Bearer tokens from it (for ``auth``'s user) instead of htpasswd."""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    @property
    def log(self) -> Path:
        return self.root / "registry.log"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    def docker_config(self, *also: str) -> dict[str, object]:
        """A Docker ``config.json`` document with this registry's credentials (what ``oras`` and the agent read), also
        for the hosts ``also`` (caches that pass a device's token through)."""
        if self.auth is None:
            return {"auths": {}}
        import base64

        token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        return {"auths": {host: {"auth": token} for host in (self.host, *also)}}

    def _config(self) -> Path:
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  formatter: json",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            f"  secret: {secrets.token_hex(16)}",
            "  tls:",
            f"    certificate: {self.tls.cert_file}",
            f"    key: {self.tls.key_file}",
        ]
        if self.token is not None:
            lines += self.token.registry_config()
        elif self.auth is not None:
            import bcrypt

            htpasswd = self.root / "htpasswd"
            hashed = bcrypt.hashpw(self.auth[1].encode(), bcrypt.gensalt(rounds=5)).decode()
            htpasswd.write_text(f"{self.auth[0]}:{hashed}\n")
            lines += ["auth:", "  htpasswd:", "    realm: edgefleet-test", f"    path: {htpasswd}"]
        if self.proxy_of is not None:
            lines += ["proxy:", f"  remoteurl: {self.proxy_of.url}"]
            if self.proxy_of.auth is not None:
                lines += [f"  username: {self.proxy_of.auth[0]}", f"  password: {self.proxy_of.auth[1]}"]
        path = self.root / "config.yml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 30.0) -> Registry:
        """Start (or start again, on the same port and storage) and wait until ``/v2/`` answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(parents=True, exist_ok=True)
        config = self._config()
        env = {**os.environ, "SSL_CERT_FILE": str(self.tls.ca_file)}  # the proxy trusts the test CA for the origin
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(binary()), "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        context = self.tls.context()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RegistryError(f"{self.name} exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=1, context=context):
                    return self
            except urllib.error.HTTPError as exc:
                exc.close()
                if exc.code == 401:
                    return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise RegistryError(f"{self.name} did not answer /v2/ in {timeout:.0f}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Stop the process (storage stays, so :meth:`start` brings the same content back)."""
        if self.proc is not None:
            controlplane._stop(self.proc, grace=10.0)
            self.proc = None

    def served(self) -> dict[str, Served]:
        """Successful GETs of blobs and manifests by digest, from this registry's JSON log (what it served)."""
        totals: dict[str, list[int]] = {}
        if not self.log.exists():
            return {}
        for line in self.log.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") != "response completed" or entry.get("http.request.method") != "GET":
                continue
            status = int(entry.get("http.response.status") or 0)
            uri = str(entry.get("http.request.uri") or "")
            if status not in (200, 206) or ("/blobs/sha256:" not in uri and "/manifests/sha256:" not in uri):
                continue
            digest = uri.rsplit("/", 1)[1].split("?", 1)[0]
            seen = totals.setdefault(digest, [0, 0])
            seen[0] += 1
            seen[1] += int(entry.get("http.response.written") or 0)
        return {digest: Served(n, b) for digest, (n, b) in totals.items()}

    def blob_file(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob (tests corrupt or truncate it to make the registry serve that)."""
        hexdigest = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"


@contextlib.contextmanager
def running(
    root: Path,
    tls: Certificates,
    *,
    auth: tuple[str, str] | None = None,
    proxy_of: Registry | None = None,
    name: str | None = None,
    token_auth: bool = False,
    port: int | None = None,
) -> Iterator[Registry]:
    """A registry on a free port under ``root``, stopped on exit. ``auth`` is its one user: htpasswd, or with
    ``token_auth`` a token service of its own (:mod:`edgefleet.testing.tokenauth`, the Bearer flow)."""
    token = None
    if token_auth:
        if auth is None:
            raise ValueError("token_auth needs auth=(user, password)")
        token = tokenauth.TokenService(root / "token", auth, tls.cert_file, tls.key_file).start()
    reg = Registry(name or root.name, root, port or controlplane.free_port(), tls, auth, proxy_of, token)
    try:
        reg.start()
        yield reg
    finally:
        reg.stop()
        if token is not None:
            token.stop()


def stamp() -> str:
    """A tag-safe timestamp for test repositories."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S%f")


__all__ = [
    "TEST_CREDENTIALS",
    "Certificates",
    "Registry",
    "RegistryError",
    "Served",
    "binary",
    "certificates",
    "running",
    "stamp",
]
