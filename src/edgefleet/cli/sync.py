"""``edgefleet sync``: GitOps for clusters without Argo CD or Flux.

Polls a branch of a Git repository, validates the manifests under ``--path``, server-side-applies them with the
field manager ``edgefleet-sync``, prunes what an earlier sync created and Git no longer has, and stamps each object
with ``edgefleet.io/source-commit`` so every rollout traces back to a commit. A commit that does not validate is
not applied at all (the cluster keeps the last good commit); the error is printed and retried on the next poll.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from edgefleet.adapters import gitrepo, gitsource, kubeapply, manifests
from edgefleet.core import syncplan, validation
from edgefleet.core.errors import InvalidSpecError, TransientError

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
    parser.set_defaults(func=run)


def sync_once(args: argparse.Namespace, cluster: kubeapply.Cluster) -> tuple[str, int, int]:
    """One sync: returns (commit, applied, pruned). Raises GitError/ManifestError/InvalidSpecError/TransientError."""
    repo, commit = gitsource.fetch(args.repo, args.branch, args.cache)
    documents = gitrepo.read_documents(repo, commit, args.path)
    diagnostics = [d for d in validation.validate(documents) if d.severity == "error"]
    if diagnostics:
        details = "\n".join(str(d) for d in diagnostics)
        raise InvalidSpecError(f"commit {commit[:12]} does not validate; nothing applied:\n{details}")
    sid = syncplan.source_id(args.repo, args.path)
    inventory_name = f"edgefleet-sync-{sid}"
    inventory = cluster.read_inventory(inventory_name, args.inventory_namespace)
    docs = [d for d in documents if isinstance(d.value, dict)]
    try:
        result = syncplan.plan(
            [d.value for d in docs],
            inventory,
            namespaced=cluster.is_namespaced,
            default_namespace=args.namespace,
            commit=commit,
            repository=args.repo,
            path=args.path,
            sources=[d.source.split(":", 1)[-1] for d in docs],
        )
    except (KeyError, ValueError) as exc:
        raise InvalidSpecError(f"commit {commit[:12]}: {exc}") from exc
    for body in result.apply:
        cluster.apply(body)
        meta = body["metadata"]
        log.info("Applied %s %s/%s commit=%s", body["kind"], meta.get("namespace", ""), meta["name"], commit[:12])
    pruned = 0
    for ref in result.prune:
        if cluster.delete(ref):
            pruned += 1
            log.info("Pruned %s commit=%s", ref, commit[:12])
    cluster.write_inventory(inventory_name, args.inventory_namespace, result.inventory, commit, sid)
    return commit, len(result.apply), pruned


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        cluster = kubeapply.Cluster(args.kubeconfig, args.context)
    except (TransientError, InvalidSpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    last: str | None = None
    try:
        while True:
            try:
                commit, applied, pruned = sync_once(args, cluster)
                if commit != last:
                    print(f"synced {args.repo}@{args.branch} {commit[:12]}: {applied} applied, {pruned} pruned")
                last = commit
                if args.once:
                    return 0
            except (gitrepo.GitError, manifests.ManifestError, InvalidSpecError, TransientError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                if args.once:
                    return 1
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 130
    finally:
        cluster.close()
