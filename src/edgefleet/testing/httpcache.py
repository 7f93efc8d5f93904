"""A plain HTTP cache per site in front of a registry: nginx (Debian's ``nginx-light``) with ``proxy_cache_lock``.

    with httpcache.running(tmp / "site-a", origin) as cache:   # devices list cache.url as their mirror
        ...
        cache.served()    # {digest: Served(requests, bytes)} from nginx's access log

Only content-addressed paths are cached (``/v2/<repo>/blobs/sha256:<hex>`` and ``.../manifests/sha256:<hex>``: their
bytes can never change); ``proxy_cache_lock`` makes concurrent misses wait for the one fetch in flight, so the origin
serves each artifact once per cache however many devices ask at once. In front of an htpasswd origin the cache holds
the origin's credentials (injected as ``Authorization: Basic`` upstream) and answers devices without any, a site
gateway; in front of a token-auth origin it passes the devices' own Bearer tokens through (they list the cache's
host in their credentials). TLS on both sides uses the test CA. Devices verify every byte anyway (digest and signature).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import getpass
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from edgefleet.testing import controlplane, registry

CONTENT = r"^/v2/.+/(blobs|manifests)/sha256:[a-f0-9]{64}$"


def binary() -> Path:
    """nginx (installed with the registry by ``hack/install-registry.sh`` when missing)."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        registry.binary()  # the install script installs nginx-light too
        found = shutil.which("nginx") or "/usr/sbin/nginx"
    return Path(found)


@dataclasses.dataclass
class HttpCache:
    """A running nginx caching ``upstream`` (a registry with htpasswd auth)."""

    root: Path
    port: int
    upstream: registry.Registry
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / "access.log"

    def _config(self) -> Path:
        tls, up = self.upstream.tls, self.upstream
        auth = ""
        if up.auth is not None and up.token is None:
            token = base64.b64encode(f"{up.auth[0]}:{up.auth[1]}".encode()).decode()
            auth = f'proxy_set_header Authorization "Basic {token}";'
        for sub in ("tmp", "cache"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        upstream = f"proxy_pass {up.url}; proxy_http_version 1.1; proxy_set_header Host {up.host}; {auth}"
        upstream += (
            f" proxy_ssl_trusted_certificate {tls.ca_file}; proxy_ssl_verify on;"
            " proxy_ssl_name localhost; proxy_ssl_server_name on;"
        )
        # Workers run as the user that starts nginx (as root, nginx would drop to www-data, who cannot write the
        # test's private directories).
        user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
        text = f"""
{user}
worker_processes 1;
daemon off;
pid {self.root}/nginx.pid;
error_log {self.root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  log_format cache '$request_method $uri $status $body_bytes_sent $upstream_cache_status';
  access_log {self.log} cache;
  client_body_temp_path {self.root}/tmp/body;
  proxy_temp_path {self.root}/tmp/proxy;
  fastcgi_temp_path {self.root}/tmp/fastcgi;
  uwsgi_temp_path {self.root}/tmp/uwsgi;
  scgi_temp_path {self.root}/tmp/scgi;
  proxy_cache_path {self.root}/cache levels=1:2 keys_zone=content:10m max_size=50g inactive=30d use_temp_path=off;
  server {{
    listen 127.0.0.1:{self.port} ssl;
    ssl_certificate {tls.cert_file};
    ssl_certificate_key {tls.key_file};
    location ~ "{CONTENT}" {{
      {upstream}
      proxy_cache content;
      proxy_cache_key $uri;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 30m;
      proxy_cache_lock_age 30m;
      proxy_cache_valid 200 30d;
      proxy_ignore_headers Cache-Control Expires Set-Cookie Vary;
      proxy_buffering on;
    }}
    location /v2/ {{
      {upstream}
    }}
  }}
}}
"""
        path = self.root / "nginx.conf"
        path.write_text(text)
        return path

    def start(self, timeout: float = 20.0) -> HttpCache:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self._config()
        with (self.root / "nginx.out").open("ab") as out:
            self.proc = subprocess.Popen(
                [str(binary()), "-p", str(self.root), "-c", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        context = self.upstream.tls.context()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise registry.RegistryError(f"nginx exited: {(self.root / 'nginx.out').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=1, context=context):
                    return self
            except urllib.error.HTTPError as exc:
                exc.close()
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        raise registry.RegistryError(f"nginx did not answer in {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is not None:
            controlplane._stop(self.proc, grace=10.0)
            self.proc = None

    def served(self) -> dict[str, registry.Served]:
        """GETs of content-addressed paths answered 200/206, by digest (hits and misses alike)."""
        totals: dict[str, list[int]] = {}
        if not self.log.exists():
            return {}
        for line in self.log.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) < 4 or parts[0] != "GET" or parts[2] not in ("200", "206") or "/sha256:" not in parts[1]:
                continue
            seen = totals.setdefault(parts[1].rsplit("/", 1)[1], [0, 0])
            seen[0] += 1
            seen[1] += int(parts[3])
        return {digest: registry.Served(n, b) for digest, (n, b) in totals.items()}


@contextlib.contextmanager
def running(root: Path, upstream: registry.Registry, port: int | None = None) -> Iterator[HttpCache]:
    cache = HttpCache(root, port or controlplane.free_port(), upstream)
    try:
        cache.start()
        yield cache
    finally:
        cache.stop()


__all__ = ["HttpCache", "binary", "running"]
