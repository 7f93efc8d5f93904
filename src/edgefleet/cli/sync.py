"""``edgefleet sync``: GitOps for clusters without Argo CD or Flux.

Polls a branch of a Git repository, validates the manifests under ``--path``, server-side-applies them with the
field manager ``edgefleet-sync``, prunes what an earlier sync created and Git no longer has, and stamps each object
with ``edgefleet.io/source-commit`` so every rollout traces back to a commit. A commit that does not validate is
not applied at all (the cluster keeps the last good commit); the error is printed and retried on the next poll.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from edgefleet.adapters import gitrepo, gitsource, kube, protocols, synctarget
from edgefleet.core import errors, syncplan, validation

log = logging.getLogger("edgefleet.sync")


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "sync",
        help="apply a Git branch to the cluster and prune what it removed",
        description="Poll a Git branch and server-side-apply its manifests, pruning objects Git no longer has.",
    )
    parser.add_argument("--repo", required=True, help="repository URL (https, ssh, git@host:path, file://, path)")
    parser.add_argument("--branch", default="main", help="branch to follow (default: main)")
    parser.add_argument("--path", default="", help="directory of plain manifests inside the repository")
    parser.add_argument("--namespace", default="default", help="namespace for objects that name none")
    parser.add_argument("--inventory-namespace", default="edgefleet-system", help="where the inventory is kept")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between polls (default: 60)")
    parser.add_argument("--once", action="store_true", help="sync one time and exit")
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig (default: in-cluster credentials)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edgefleet" / "git")
    parser.add_argument(
        "--max-fetch-bytes",
        type=int,
        default=gitsource.MAX_FETCH_BYTES,
        help=f"refuse a fetch that would store more than this (default: {gitsource.MAX_FETCH_BYTES})",
    )
    parser.set_defaults(func=run)


async def sync_once(args: argparse.Namespace, client: protocols.KubeClient) -> tuple[str, int, int]:
    """One sync: returns (commit, applied, pruned). Raises InvalidSpecError/TransientError (Git, manifests, API)."""
    repo, commit = gitsource.fetch(
        args.repo, args.branch, args.cache, getattr(args, "max_fetch_bytes", None) or gitsource.MAX_FETCH_BYTES
    )
    documents = gitrepo.read_documents(repo, commit, args.path)
    diagnostics = [d for d in validation.validate(documents) if d.severity == "error"]
    if diagnostics:
        details = "\n".join(str(d) for d in diagnostics)
        raise errors.InvalidSpecError(f"commit {commit[:12]} does not validate; nothing applied:\n{details}")
    sid = syncplan.source_id(args.repo, args.path)
    inventory_name = f"edgefleet-sync-{sid}"
    inventory = await synctarget.read_inventory(client, inventory_name, args.inventory_namespace)
    docs = [d for d in documents if isinstance(d.value, dict)]
    namespaced = await synctarget.namespaced(client, (d.value for d in docs))
    try:
        result = syncplan.plan(
            [d.value for d in docs],
            inventory,
            namespaced=namespaced,
            default_namespace=args.namespace,
            commit=commit,
            repository=args.repo,
            path=args.path,
            sources=[d.source.split(":", 1)[-1] for d in docs],
        )
    except (KeyError, ValueError) as exc:
        raise errors.InvalidSpecError(f"commit {commit[:12]}: {exc}") from exc
    for body in result.apply:
        await synctarget.apply(client, body)
        meta = body["metadata"]
        log.info("Applied %s %s/%s commit=%s", body["kind"], meta.get("namespace", ""), meta["name"], commit[:12])
    pruned = 0
    for ref in result.prune:
        if await synctarget.prune(client, ref):
            pruned += 1
            log.info("Pruned %s commit=%s", ref, commit[:12])
    await synctarget.write_inventory(client, inventory_name, args.inventory_namespace, result.inventory, commit, sid)
    return commit, len(result.apply), pruned


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace) -> int:
    try:
        connection = kube.from_kubeconfig(args.kubeconfig, args.context) if args.kubeconfig else kube.in_cluster()
    except errors.EdgefleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    client = kube.connect(connection)
    last: str | None = None
    try:
        while True:
            try:
                commit, applied, pruned = await sync_once(args, client)
                if commit != last:
                    print(f"synced {args.repo}@{args.branch} {commit[:12]}: {applied} applied, {pruned} pruned")
                last = commit
                if args.once:
                    return 0
            except errors.EdgefleetError as exc:
                print(f"error: {exc}", file=sys.stderr)
                if args.once:
                    return 1
            except Exception as exc:
                # A commit (or a cluster answer) that trips an unforeseen error must not end the daemon: it is
                # reported, and the next poll tries again (a fixed commit, a recovered cluster).
                log.exception("Sync failed unexpectedly")
                print(f"error: sync failed unexpectedly ({type(exc).__name__}: {exc}); retrying", file=sys.stderr)
                if args.once:
                    return 1
            await asyncio.sleep(args.interval)
    finally:
        await client.close()
