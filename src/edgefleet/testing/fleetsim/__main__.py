"""``python -m edgefleet.testing.fleetsim``: run a simulated fleet of real edge agents against an API server.

    python -m edgefleet.testing.fleetsim run --kubeconfig ~/.kube/config --namespace fleet --devices 1000 \\
        --processes 2 --trust-key release.pub --load-rps 0.5

prints the fleet's state every few seconds until Ctrl-C, then stops every device and removes its state.
(``worker`` is the internal entry point of one worker process.)
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from edgefleet.testing.fleetsim import fleet, layout, worker


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (pure)."""
    p = argparse.ArgumentParser(prog="python -m edgefleet.testing.fleetsim", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a fleet until Ctrl-C")
    run.add_argument("--kubeconfig", type=Path, required=True)
    run.add_argument("--namespace", default="default")
    run.add_argument("--devices", type=int, default=100)
    run.add_argument("--processes", type=int, default=2)
    run.add_argument("--trust-key", action="append", default=[], metavar="PEM", help="trusted ed25519 public key")
    run.add_argument("--load-rps", type=float, default=0.0, help="synthetic inferences per second per device")
    run.add_argument("--app", default="adder", help="value of the devices' app label")
    run.add_argument("--label-layout", choices=layout.LABEL_LAYOUTS, default="spread", help="sites, lines, hardware")
    run.add_argument("--sockets-dir", type=Path, help="serve each device's models on <dir>/<device>.sock")
    run.add_argument("--root", type=Path, help="state root (default: a new temp dir, removed at exit)")
    run.add_argument(
        "--watch",
        choices=layout.WATCH_MODES,
        default="device",
        help="device: a watch per device; hub: one watch per worker process (KubeEdge-style)",
    )
    w = sub.add_parser("worker", help=argparse.SUPPRESS)
    w.add_argument("--spec", type=Path, required=True)
    w.add_argument("--first", type=int, required=True)
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--stats", type=Path, required=True)
    p.add_argument("--log-level", default="WARNING")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if args.command == "worker":
        return worker.main(args.spec, args.first, args.count, args.stats)
    root = args.root or fleet.temp_root()
    spec = layout.FleetSpec(
        kubeconfig=str(args.kubeconfig),
        namespace=args.namespace,
        devices=args.devices,
        processes=args.processes,
        root=str(root),
        trust_keys=tuple(args.trust_key),
        app=args.app,
        load_rps=args.load_rps,
        watch=args.watch,
        sockets_dir=str(args.sockets_dir) if args.sockets_dir else None,
        label_layout=args.label_layout,
    )
    sim = fleet.Fleet(spec, remove_root=args.root is None).start()
    try:
        while True:
            sim.check()
            snap = sim.snapshot()
            print(
                f"started={snap.started}/{spec.devices} registered={snap.registered} requests={snap.total_requests} "
                f"writes={snap.writes} rss={snap.rss_bytes / 2**20:.0f}MiB",
                f"reported={dict(sorted(snap.reported.items()))}",
                flush=True,
            )
            time.sleep(5)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
