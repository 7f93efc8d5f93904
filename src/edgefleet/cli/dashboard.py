"""``edgefleet dashboard``: a read-only web view of the fleet and its rollouts, live, on 127.0.0.1.

The command talks to the API server with the user's kubeconfig and context (``--kubeconfig``, ``--context``), watches
the EdgeDevices, ModelDeployments, heartbeat Leases and rollout Events of one or more namespaces (``-n``, repeatable;
``-A`` for all), and serves a page that shows the deployments with their steps, a fleet map of sites, lines and devices,
each device's page, and a convergence chart of the running rollout. The page gets every change pushed as a
server-sent event; it never sees the credentials. There are no write actions (promote and abort stay
``edgefleet rollout``'s).

It binds to 127.0.0.1 unless told otherwise, and a non-loopback ``--address`` needs ``--expose``: the dashboard has no
login of its own, so whoever reaches the port sees the fleet.

Exit codes: 0 after Ctrl-C or SIGTERM, 1 when the cluster cannot be read, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from edgefleet.adapters import dashboard, kube
from edgefleet.core import errors

SYNC_TIMEOUT_SECONDS = 120.0
REQUIRED = (kube.EDGEDEVICES, kube.MODELDEPLOYMENTS)
OPTIONAL = (kube.LEASES, kube.EVENTS)


async def _preflight(client: kube.Client, namespaces: list[str | None]) -> dict[str, str]:
    """Read one item of each collection, so a missing CRD or a missing permission is a clear error now rather than
    a watch that retries forever. Returns what can be shown only in part: kind -> warning."""
    unreadable: dict[str, str] = {}
    for ns in namespaces:
        for resource in (*REQUIRED, *OPTIONAL):
            try:
                await client.request("GET", resource.path(ns), params={"limit": "1"}, verb="LIST")
            except errors.TransientError:
                raise
            except errors.EdgefleetError as exc:
                if resource in REQUIRED:
                    raise
                what = "offline devices cannot be told apart" if resource is kube.LEASES else "no Events are shown"
                unreadable[resource.kind] = f"cannot list {resource.kind}s ({exc}); {what}"
    return unreadable


async def _unless_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``work`` until it ends (True) or ``stop`` is set first (False); its errors propagate."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stopped):
        if pending not in done:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
    if task in done:
        task.result()
        return True
    return False


async def serve(args: argparse.Namespace) -> int:
    connection = kube.default_connection(args.kubeconfig, args.context)
    namespaces: list[str] | None = None if args.all_namespaces else (args.namespace or [connection.namespace])
    client = kube.connect(connection)
    scope = "all namespaces" if namespaces is None else "namespace " + ", ".join(namespaces)
    title = f"{args.context + ' · ' if args.context else ''}{scope}"
    fleet: dashboard.FleetCache | None = None
    server: dashboard.Server | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        unreadable = await _preflight(client, [None] if namespaces is None else list(namespaces))
        for warning in unreadable.values():
            print(f"warning: {warning}", file=sys.stderr)
        fleet = dashboard.FleetCache(
            client,
            namespaces,
            title=title,
            expand_below=args.expand_below,
            leases=kube.LEASES.kind not in unreadable,
            events=kube.EVENTS.kind not in unreadable,
        )
        server = dashboard.Server(fleet, args.address, args.port, check_host=not args.expose)
        await fleet.start()
        if not await _unless_stopped(fleet.wait_synced(SYNC_TIMEOUT_SECONDS), stop):
            return 0  # Ctrl-C before the first list completed
        await server.start()
        devices = fleet.summary.total
        print(
            f"Serving the fleet dashboard on {server.url} ({scope}, {devices} devices, read-only; Ctrl-C stops)",
            flush=True,
        )
        await stop.wait()
        return 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if server is not None:
            await server.stop()
        if fleet is not None:
            await fleet.stop()
        await client.close()


def run(args: argparse.Namespace) -> int:
    """Entry point of ``edgefleet dashboard``."""
    if not dashboard.is_loopback(args.address) and not args.expose:
        print(
            f"error: --address {args.address} is not a loopback address; the dashboard has no login, so anyone who "
            "can reach it sees the fleet. Pass --expose to bind it there anyway (behind your own access control).",
            file=sys.stderr,
        )
        return 2
    if args.namespace and args.all_namespaces:
        print("error: pass either -n/--namespace or -A/--all-namespaces, not both", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(serve(args))
    except errors.EdgefleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the port is taken, the address is not this machine's
        print(f"error: cannot serve on {args.address}:{args.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()


def register(subparsers: Any) -> None:
    """Add ``dashboard`` to the ``edgefleet`` command."""
    parser = subparsers.add_parser(
        "dashboard",
        help="serve a read-only live web dashboard of the fleet (127.0.0.1 by default)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    parser.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="namespace to show (repeatable; default: the context's)",
    )
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="show every namespace")
    parser.add_argument("--address", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port to bind (default 8090; 0 picks a free one)")
    parser.add_argument(
        "--expose", action="store_true", help="allow a non-loopback --address (the dashboard has no login of its own)"
    )
    parser.add_argument(
        "--expand-below",
        type=int,
        default=1000,
        help="show every device's tile at once when the fleet has fewer devices (default 1000); above, lines "
        "show counts and open on a click",
    )
    parser.set_defaults(func=run)


__all__ = ["register", "run", "serve"]
