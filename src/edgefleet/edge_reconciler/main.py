"""``edgefleet-agent``: one per device (a KubeEdge DaemonSet pod or a systemd service).

    edgefleet-agent --config /etc/edgefleet/agent.yaml
    edgefleet-agent --device-name cam-7 --state-dir /var/lib/edgefleet --trust-key release.pub \\
        --api-mode kubeconfig --kubeconfig ~/.kube/config

Flags override the config file. SIGTERM/SIGINT stop the agent cleanly; a SIGKILL or power cut is also safe.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import resource
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from edgefleet import __version__
from edgefleet.adapters import artifacts, bundle, inference_server, kube, oci, protocols
from edgefleet.api import addresses
from edgefleet.core.errors import EdgefleetError, InvalidSpecError, Reason
from edgefleet.edge_reconciler import capabilities, config, control, device, serving, state

log = logging.getLogger("edgefleet.agent")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (pure)."""
    p = argparse.ArgumentParser(prog="edgefleet-agent", description="Keep this device on its desired models.")
    p.add_argument("--version", action="version", version=f"edgefleet-agent {__version__}")
    p.add_argument("--config", type=Path, help="YAML config file (camelCase keys); flags override it")
    p.add_argument("--device-name", dest="deviceName")
    p.add_argument("--namespace")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="device label (repeatable)")
    p.add_argument("--state-dir", dest="stateDir", type=str)
    p.add_argument("--trust-key", action="append", default=[], metavar="PEM", help="trusted ed25519 public key")
    p.add_argument("--api-mode", dest="api.mode", choices=["kubeconfig", "in-cluster", "plain", "file"])
    p.add_argument("--api-url", dest="api.url", help="plain-HTTP API endpoint (KubeEdge MetaServer)")
    p.add_argument("--kubeconfig", dest="api.kubeconfig")
    p.add_argument("--context", dest="api.context")
    p.add_argument("--desired-file", dest="api.desiredFile")
    p.add_argument("--status-file", dest="api.statusFile")
    p.add_argument("--port", dest="server.port", type=int)
    p.add_argument("--unix-socket", dest="server.unixSocket")
    p.add_argument("--log-level", default="INFO")
    return p


def load_config(args: argparse.Namespace) -> config.AgentConfig:
    """The config file overridden by flags."""
    plain_keys = ("deviceName", "namespace", "stateDir")
    overrides = {k: v for k, v in vars(args).items() if "." in k or k in plain_keys}
    try:
        labels = dict(item.split("=", 1) for item in args.label)
    except ValueError as exc:
        raise InvalidSpecError(f"--label takes KEY=VALUE (got {args.label})", Reason.INVALID_CONFIG) from exc
    return config.load(args.config, overrides, extra_labels=labels, extra_trust_keys=list(args.trust_key))


def make_control(cfg: config.AgentConfig, session: kube.Session) -> protocols.DeviceControl:
    api = cfg.api
    if api.mode == "file":
        if api.desired_file is None:
            raise InvalidSpecError("api.mode file needs api.desiredFile (and api.statusFile)", Reason.INVALID_CONFIG)
        return control.FileControl(api.desired_file, api.status_file or cfg.state_dir / "status.json")
    if api.mode == "kubeconfig":
        if api.kubeconfig is None:
            raise InvalidSpecError(
                "api.mode kubeconfig needs api.kubeconfig (--kubeconfig PATH)", Reason.INVALID_CONFIG
            )
        connection = kube.from_kubeconfig(api.kubeconfig, api.context)
    elif api.mode == "in-cluster":
        connection = kube.in_cluster()
    else:
        connection = kube.plain(api.url, cfg.namespace)
    client = kube.Client(connection, session)
    return control.KubeControl(
        client,
        cfg.namespace,
        cfg.device_name,
        lease_duration_seconds=cfg.lease_duration_seconds,
        retry_initial_seconds=cfg.retry_initial_seconds,
        retry_max_seconds=cfg.retry_max_seconds,
    )


def raise_descriptor_limit(connections: int) -> int:
    """Raise the soft NOFILE limit to the hard one, and return how many inference connections fit under it (half of
    the descriptors, the rest kept for the journal, slots, downloads and the API): running out of descriptors would
    stop the device from reading its own files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    fit = max(16, soft // 2)
    if connections > fit:
        log.warning("Lowered server.maxConnections configured=%d nofile=%d used=%d", connections, soft, fit)
    return min(connections, fit)


def make_fetcher(
    cfg: config.AgentConfig, session: aiohttp.ClientSession, policy: addresses.FetchPolicy | None = None
) -> artifacts.Fetcher:
    """The artifact fetcher: the configured mirrors in order, then the origin; registry credentials from a file."""
    credentials = {}
    if cfg.artifacts.credentials_file is not None:
        path = cfg.artifacts.credentials_file
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidSpecError(
                f"{path}: cannot read the registry credentials: {exc}", Reason.INVALID_CONFIG
            ) from exc
        credentials = oci.credentials_from_docker_config(doc, str(path))
    registry = oci.Registry(session, credentials=credentials, plain_http=cfg.artifacts.plain_http)
    mirrors = [artifacts.Mirror(m.url, tuple(m.origins)) for m in cfg.artifacts.mirrors]
    return artifacts.Fetcher(
        session, mirrors=mirrors, registry=registry, timeout_seconds=cfg.download_timeout_seconds, policy=policy
    )


async def run(cfg: config.AgentConfig) -> None:
    """Build every part from ``cfg`` and run until SIGTERM/SIGINT."""
    keys = [bundle.load_public_key(Path(p).read_bytes()) for p in cfg.trust_keys]
    if not keys:
        log.warning("No trust keys configured: every artifact will be rejected")
    store = state.Store(cfg.state_dir)
    registry = serving.Registry(workers=cfg.inference_workers)
    limits = inference_server.Limits(
        max_connections=raise_descriptor_limit(cfg.server.max_connections),
        idle_timeout_seconds=cfg.server.idle_timeout_seconds,
        body_timeout_seconds=cfg.server.body_timeout_seconds,
        max_json_bytes=cfg.server.max_json_bytes,
        max_body_bytes=cfg.server.max_body_bytes,
    )
    server = inference_server.Server(registry, port=cfg.server.port, unix_socket=cfg.server.unix_socket, limits=limits)
    http = kube.new_session()
    policy = addresses.FetchPolicy.from_env(extra=cfg.fetch_allow)
    downloads = artifacts.new_session(policy=policy, ssl_context=oci.ssl_context(cfg.artifacts.ca_file))
    fetch = make_fetcher(cfg, downloads, policy)
    agent = device.Agent(
        control=make_control(cfg, http),
        store=store,
        registry=registry,
        fetch=fetch,
        trusted_keys=keys,
        settings=cfg.agent_settings(),
        capabilities=capabilities.detect(),
    )
    await server.start()
    where = cfg.server.unix_socket or f"127.0.0.1:{server.port}"
    log.info("Started edgefleet-agent device=%s namespace=%s serving=%s", cfg.device_name, cfg.namespace, where)
    task = asyncio.ensure_future(agent.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        log.info("Stopped edgefleet-agent device=%s", cfg.device_name)
    finally:
        await server.stop()
        await kube.close_session(http)
        await downloads.close()
        registry.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``edgefleet-agent``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Every line the agent writes goes through one limiter: no input can make the log grow without bound.
    limiter = inference_server.RateLimitFilter()
    for handler in logging.getLogger().handlers:
        handler.addFilter(limiter)
    try:
        cfg = load_config(args)
    except EdgefleetError as exc:
        print(f"edgefleet-agent: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(run(cfg))
        except EdgefleetError as exc:
            print(f"edgefleet-agent: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
