"""A real Git server on 127.0.0.1 for tests: ``git http-backend`` (git's smart-HTTP server) behind a small CGI bridge.

Clones, fetches and pushes go through git's own server side, exactly as with a Git host over HTTP: ``served(root)``
yields a base URL; ``<url>/<name>.git`` is the bare repository ``root/<name>.git``. Pushes are allowed (the bridge
sets ``REMOTE_USER``, which ``http-backend`` requires for ``receive-pack``). Receive-side rules come from each
repository's config (e.g. ``receive.denyNonFastForwards``), as on a real server.

:class:`PullRequests` is the other half of a forge, and a stand-in: an HTTP endpoint that records
``POST /repos/{owner}/{repo}/pulls`` (the Gitea/GitHub API call) and answers like Gitea. No real forge is built here.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_BODY = 64 * 1024 * 1024


def _handler(root: Path) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _cgi(self) -> None:
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.send_error(413)
                return
            body = self.rfile.read(length) if length else b""
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REMOTE_USER": "edgefleet-test",
                "REMOTE_ADDR": self.client_address[0],
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            }
            result = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=120, check=False
            )
            head, _, payload = result.stdout.partition(b"\r\n\r\n")
            if not _:
                head, _, payload = result.stdout.partition(b"\n\n")
            status, headers = 200, []
            for line in head.decode("latin-1").splitlines():
                key, _, value = line.partition(":")
                if key.lower() == "status":
                    status = int(value.strip().split()[0])
                elif key:
                    headers.append((key, value.strip()))
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _cgi
        do_POST = _cgi

    return Handler


@contextlib.contextmanager
def served(root: Path) -> Iterator[str]:
    """Serve the bare repositories under ``root`` over smart HTTP on 127.0.0.1; yields the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def bare(root: Path, name: str) -> Path:
    """A new bare repository ``root/<name>.git`` that refuses non-fast-forward pushes and branch deletion."""
    path = root / f"{name}.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(path)], check=True)
    for key, value in (("receive.denyNonFastForwards", "true"), ("receive.denyDeletes", "true")):
        subprocess.run(["git", "-C", str(path), "config", key, value], check=True)
    return path


class PullRequests:
    """Records pull requests opened through the forge API (a stand-in for Gitea's ``POST .../pulls``)."""

    def __init__(self, redirect: str | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.redirect = redirect
        """When set, every request is recorded and answered ``302 Found`` to ``redirect`` + its path."""
        self._server: http.server.ThreadingHTTPServer | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        """Serve on 127.0.0.1; yields the API base URL."""
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(min(length, 1_000_000)) or b"{}")
                recorder.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                        "body": body,
                    }
                )
                if recorder.redirect is not None:
                    self.send_response(302)
                    self.send_header("Location", recorder.redirect + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                number = len(recorder.requests)
                owner_repo = self.path.removeprefix("/api/v1").removeprefix("/repos/").removesuffix("/pulls")
                answer = json.dumps({"number": number, "html_url": f"http://forge.test/{owner_repo}/pulls/{number}"})
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer.encode())

            do_GET = do_POST  # a client that followed a redirect arrives here as GET: recorded all the same

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/api/v1"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
