"""The agent's configuration: a YAML file (camelCase keys, safe loader) overridden by command-line flags.

Sample (``edge_reconciler/config.sample.yaml``)::

    deviceName: cam-7
    namespace: factory-1
    labels: {edgefleet.io/site: plant-a, edgefleet.io/hardware-class: x86-avx2}
    stateDir: /var/lib/edgefleet
    trustKeys: [/etc/edgefleet/trust/release.pub]
    api: {mode: plain, url: "http://127.0.0.1:10550"}      # KubeEdge MetaServer
    server: {port: 8181}
    artifacts:                                             # optional: site-local caches, registry trust
      mirrors: [{url: "https://registry-cache.plant-a:5000", origins: [registry.example.com]}]
      caFile: /etc/edgefleet/registry-ca.pem
      credentialsFile: /etc/edgefleet/registry-auth.json  # Docker config.json format

:class:`AgentConfig` is the file; :class:`AgentSettings` the device loop's knobs taken from it
(:meth:`AgentConfig.agent_settings`), which tests and the fleet simulator also build directly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from edgefleet.api.common import DNS_LABEL, ApiModel
from edgefleet.api.modeldeployment import check_fetchable_uri
from edgefleet.core.errors import InvalidSpecError, Reason

ApiMode = Literal["kubeconfig", "in-cluster", "plain", "file"]


@dataclasses.dataclass(frozen=True)
class AgentSettings:
    """The device loop's knobs (:class:`edgefleet.edge_reconciler.device.Agent` and its parts)."""

    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    max_bundle_bytes: int = 512 * 1024**2
    lease_duration_seconds: int = 300
    status_interval_seconds: float = 300.0
    health_tick_seconds: float = 0.05
    retry_initial_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    intra_op_threads: int = 1
    resync_seconds: float = 30.0
    report_coalesce_seconds: float = 0.1
    """Changes are gathered this long before a status write (an install's quick phases become one write)."""
    verdict_check_seconds: float = 1.0
    """How often the report loop looks for a changed health *verdict* (reported at once); mere health numbers are
    coalesced to one write per ``status_interval_seconds``."""


class ApiConfig(ApiModel):
    """How the agent reaches its desired state."""

    mode: ApiMode = Field(default="plain", description="kubeconfig, in-cluster, plain (MetaServer) or file.")
    url: str = Field(default="http://127.0.0.1:10550", description="Plain-HTTP endpoint (mode plain).")
    kubeconfig: Path | None = Field(default=None, description="Kubeconfig file (mode kubeconfig).")
    context: str | None = Field(default=None, description="Kubeconfig context; default: current-context.")
    desired_file: Path | None = Field(default=None, description="EdgeDeviceSpec YAML (mode file, no cluster).")
    status_file: Path | None = Field(default=None, description="Where status JSON is written (mode file).")


class ServerConfig(ApiModel):
    """Where the local inference server listens: 127.0.0.1 only, or a UNIX socket."""

    port: int = Field(default=8181, ge=0, le=65535, description="TCP port on 127.0.0.1 (0: any free port).")
    unix_socket: Path | None = Field(default=None, description="Serve on this UNIX socket instead of TCP.")
    max_connections: int = Field(
        default=256, ge=1, le=65536, description="Connections served at once (more get 503); kept below NOFILE."
    )
    idle_timeout_seconds: float = Field(
        default=15.0, gt=0, description="Close a connection that sends no complete request for this long."
    )
    body_timeout_seconds: float = Field(default=30.0, gt=0, description="A request body must arrive within this.")
    max_json_bytes: int = Field(default=1024**2, ge=1024, description="Largest JSON request body (413 above).")
    max_body_bytes: int = Field(default=64 * 1024**2, ge=1024, description="Largest binary request body (413).")


class MirrorConfig(ApiModel):
    """A site-local copy of artifacts, tried before the origin (an OCI pull-through cache, an HTTP cache)."""

    url: Annotated[str, Field(max_length=2048, pattern=r"^https?://[^/\s]+/?$")] = Field(
        description="scheme://host[:port] serving the same paths as the origins it mirrors."
    )
    origins: list[Annotated[str, Field(max_length=255)]] = Field(
        default_factory=list, description="host[:port] of the origins it mirrors; empty: every origin."
    )

    @field_validator("url")
    @classmethod
    def _safe(cls, url: str) -> str:
        return check_fetchable_uri(url)


class ArtifactsConfig(ApiModel):
    """Where artifacts come from: mirrors in order, then the origin the spec names; registry trust and credentials."""

    mirrors: list[MirrorConfig] = Field(default_factory=list, max_length=16)
    ca_file: Path | None = Field(default=None, description="PEM CA trusted for registries and mirrors (and system).")
    credentials_file: Path | None = Field(
        default=None, description="Docker config.json-style registry credentials (auths: {host: {auth: ...}})."
    )
    plain_http: list[str] = Field(default_factory=list, description="Registry hosts spoken to over plain HTTP.")


class AgentConfig(ApiModel):
    """Everything ``edgefleet-agent`` needs."""

    device_name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
    namespace: Annotated[str, Field(max_length=63, pattern=DNS_LABEL)] = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    state_dir: Path = Path("/var/lib/edgefleet")
    trust_keys: list[Path] = Field(
        default_factory=list, description="PEM ed25519 public keys bundles must verify with."
    )
    api: ApiConfig = Field(default_factory=ApiConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    max_bundle_bytes: int = Field(default=512 * 1024**2, ge=1, description="Refuse bigger artifacts.")
    download_timeout_seconds: float = Field(default=300.0, gt=0)
    lease_duration_seconds: int = Field(
        default=300,
        ge=5,
        description=(
            "Heartbeat Lease duration; renewed three times per duration (every 100 s by default). The operator counts "
            "the device as unreachable once its Lease was not renewed for this long."
        ),
    )
    status_interval_seconds: float = Field(
        default=300.0, gt=0, description="Health numbers at most this often; changed verdicts and states at once."
    )
    health_tick_seconds: float = Field(default=0.05, gt=0, description="How often probation is evaluated.")
    retry_initial_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=60.0, gt=0)
    inference_workers: int = Field(default=2, ge=1, le=64)
    fetch_allow: list[Literal["loopback", "unique-local"]] = Field(
        default_factory=list,
        description="Address ranges artifact downloads may connect to besides ordinary ones (see "
        "edgefleet.api.addresses; EDGEFLEET_FETCH_ALLOW adds to it). Link-local and metadata never.",
    )
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)
    intra_op_threads: int = Field(default=1, ge=1, le=64)

    def agent_settings(self) -> AgentSettings:
        """The device loop's knobs from this file (pure); the rest keep their defaults."""
        return AgentSettings(
            labels=dict(self.labels),
            max_bundle_bytes=self.max_bundle_bytes,
            lease_duration_seconds=self.lease_duration_seconds,
            status_interval_seconds=self.status_interval_seconds,
            health_tick_seconds=self.health_tick_seconds,
            retry_initial_seconds=self.retry_initial_seconds,
            retry_max_seconds=self.retry_max_seconds,
            intra_op_threads=self.intra_op_threads,
        )


def load(
    path: Path | None,
    overrides: dict[str, Any],
    *,
    extra_labels: dict[str, str] | None = None,
    extra_trust_keys: list[str] | None = None,
) -> AgentConfig:
    """Read ``path`` (if given), apply non-``None`` ``overrides`` (dotted keys allowed: ``api.url``), add labels
    and trust keys given as flags, validate."""
    doc: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidSpecError(f"{path}: cannot read the agent config: {exc}", Reason.INVALID_CONFIG) from exc
        if not isinstance(loaded, dict):
            raise InvalidSpecError(f"{path}: the agent config must be a YAML mapping", Reason.INVALID_CONFIG)
        doc = loaded
    for key, value in overrides.items():
        if value is None:
            continue
        target = doc
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = value
    if extra_labels:
        doc["labels"] = {**(doc.get("labels") or {}), **extra_labels}
    if extra_trust_keys:
        doc["trustKeys"] = [*(doc.get("trustKeys") or []), *extra_trust_keys]
    try:
        return AgentConfig.model_validate(doc)
    except ValidationError as exc:
        where = str(path) if path else "flags"
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False))
        raise InvalidSpecError(f"{where}: invalid agent config: {problems}", Reason.INVALID_CONFIG) from exc


__all__ = ["AgentConfig", "AgentSettings", "ApiConfig", "ArtifactsConfig", "MirrorConfig", "ServerConfig", "load"]
