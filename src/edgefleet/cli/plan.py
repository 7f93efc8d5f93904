"""``edgefleet plan --repo DIR --base REV --head REV``: what merging a pull request would change in the fleet.

Reads the manifests at both revisions straight from Git, validates the head, diffs the edgefleet objects, and, given
an inventory (``--inventory FILE`` or ``--kubeconfig``), lists the targeted devices by rollout wave; from a cluster it
also marks the devices whose Lease expired (unreachable: kept out of the canary steps, as the operator plans it).
Markdown by default (paste it into the pull request), ``--output json`` for bots. Exit 1 when the head does not
validate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edgefleet.adapters import gitrepo, inventory
from edgefleet.api import edgedevice
from edgefleet.core import errors, fleetplan, validation


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "plan",
        help="show what merging a revision would change in the fleet",
        description="Diff the fleet manifests between two Git revisions and preview the rollout waves.",
    )
    parser.add_argument("--repo", type=Path, default=Path("."), help="Git repository (default: .)")
    parser.add_argument("--base", required=True, help="base revision (e.g. origin/main)")
    parser.add_argument("--head", default="HEAD", help="head revision (default: HEAD)")
    parser.add_argument("--path", default="", help="directory inside the repository holding the manifests")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--inventory", type=Path, help="YAML file of EdgeDevices to preview waves against")
    source.add_argument("--kubeconfig", type=Path, help="read EdgeDevices from this cluster instead")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--output", "-o", choices=("markdown", "json"), default="markdown")
    parser.set_defaults(func=run)


def _objects(repo: Any, rev: str, path: str) -> tuple[list[validation.Parsed], list[validation.Diagnostic]]:
    return validation.parse_all(gitrepo.read_documents(repo, rev, path))


def run(args: argparse.Namespace) -> int:
    try:
        repo = gitrepo.open_repo(args.repo)
        base, _ = _objects(repo, args.base, args.path)
        head, diagnostics = _objects(repo, args.head, args.path)
        devices: list[edgedevice.EdgeDevice] = []
        unreachable: set[tuple[str, str]] = set()
        if args.inventory:
            devices = inventory.from_file(args.inventory)
        elif args.kubeconfig:
            devices = inventory.from_cluster(args.kubeconfig, args.context)
            unreachable = inventory.unreachable_in_cluster(args.kubeconfig, args.context)
    except errors.EdgefleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    problems = [d for d in diagnostics if d.severity == "error"]
    if problems:
        for d in problems:
            print(d, file=sys.stderr)
        print(f"error: {args.head} does not validate ({len(problems)} errors); no plan", file=sys.stderr)
        return 1
    if not devices:
        devices = [p.obj for p in head if isinstance(p.obj, edgedevice.EdgeDevice)]
    result = fleetplan.compare([p.obj for p in base], [p.obj for p in head], devices, unreachable)
    if args.output == "json":
        json.dump({"base": args.base, "head": args.head, **result.to_json()}, sys.stdout, indent=2, default=str)
        print()
    else:
        sys.stdout.write(fleetplan.to_markdown(result, args.base, args.head))
    return 0
