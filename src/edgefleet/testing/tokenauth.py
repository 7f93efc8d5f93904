"""A token service for a test registry: the Bearer flow of the distribution spec, on 127.0.0.1 with TLS.

Distribution's ``auth.token`` mode sends clients to a *realm*; the client asks it for a token with its credentials
(Basic), for the repository scopes it needs, and retries with ``Authorization: Bearer <token>``. This service checks
one username and password and issues ES256 JWTs the registry verifies against ``rootcertbundle``: the signing
certificate travels in the ``x5c`` header and chains to the test CA. Registry pull-through caches of distribution 2.8
authenticate to an origin only this way (its proxy ignores Basic challenges), which is why the cache tests and the
benchmark use a token-auth origin.

Every token request is recorded (path and scope, never the credentials) so tests can count them.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import secrets
import ssl
import time
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from edgefleet.testing import background, controlplane

ISSUER = "edgefleet-test-token-issuer"
SERVICE = "edgefleet-test-registry"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclasses.dataclass
class TokenService:
    """Issue registry tokens for ``credentials`` at ``https://127.0.0.1:<port>/token``."""

    directory: Path
    credentials: tuple[str, str]
    cert_file: Path
    key_file: Path
    port: int = 0
    requests: list[str] = dataclasses.field(default_factory=list)
    refused: int = 0

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ca = controlplane._cert(controlplane._name("edgefleet-token-ca"), None, ca=True)
        self._signer = controlplane._cert(controlplane._name("edgefleet-token-signer"), ca, ca=False)
        self.root_bundle = self.directory / "token-ca.pem"
        self.root_bundle.write_bytes(ca.cert_pem())
        app = web.Application()
        app.router.add_get("/token", self._handle)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        self._background = background.BackgroundApp(app, context)

    @property
    def realm(self) -> str:
        return f"https://127.0.0.1:{self.port}/token"

    def registry_config(self) -> list[str]:
        """The ``auth:`` section of a distribution config that trusts this service."""
        return [
            "auth:",
            "  token:",
            f"    realm: {self.realm}",
            f"    service: {SERVICE}",
            f"    issuer: {ISSUER}",
            f"    rootcertbundle: {self.root_bundle}",
        ]

    def _token(self, subject: str, access: list[dict[str, object]]) -> str:
        leaf = self._signer.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(leaf).decode()]}
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}".encode()
        der = self._signer.key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input.decode()}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    async def _handle(self, request: web.Request) -> web.Response:
        scopes = request.query.getall("scope", [])
        self.requests.append(f"{request.path}?scope={','.join(scopes)}")
        header = request.headers.get("Authorization", "")
        user = ""
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if (user, password) != self.credentials:
                self.refused += 1
                return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        access: list[dict[str, object]] = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and name:
                granted = [a for a in actions.split(",") if a in ("pull", "push")] if user else []
                access.append({"type": "repository", "name": name, "actions": granted})
        token = self._token(user or "anonymous", access)
        issued = dt.datetime.now(dt.UTC).isoformat()
        return web.json_response({"token": token, "access_token": token, "expires_in": 300, "issued_at": issued})

    def start(self) -> TokenService:
        self.port = self._background.start()
        return self

    def stop(self) -> None:
        self._background.stop()


__all__ = ["ISSUER", "SERVICE", "TokenService"]
