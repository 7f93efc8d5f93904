"""What the ``status`` and ``rollout`` commands share: cluster access and reading deployments and devices.

Every command that talks to a cluster takes the flags ``kubectl`` users expect: ``--kubeconfig``, ``--context``,
``-n/--namespace`` and ``-o/--output``; the listing commands also ``-A/--all-namespaces``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from edgefleet.adapters import fleet, kube
from edgefleet.api import edgedevice, modeldeployment
from edgefleet.core import errors


def add_cluster_arguments(parser: argparse.ArgumentParser, *, all_namespaces: bool = False) -> None:
    """``--kubeconfig``, ``--context``, ``-n/--namespace``, ``-o/--output`` (and ``-A`` where a command lists)."""
    group = parser.add_argument_group("cluster")
    group.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    group.add_argument("--context", default=None, help="kubeconfig context (default: its current-context)")
    group.add_argument("-n", "--namespace", default=None, help="namespace (default: the context's)")
    if all_namespaces:
        group.add_argument(
            "-A", "--all-namespaces", action="store_true", help="list across every namespace (adds NAMESPACE)"
        )
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")


class Cluster:
    """A connection to a cluster and the namespace a command works in (None: every namespace, with ``-A``)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.api = kube.connect(kube.default_connection(args.kubeconfig, getattr(args, "context", None)))
        self.all_namespaces: bool = bool(getattr(args, "all_namespaces", False))
        self.namespace: str = args.namespace or self.api.connection.namespace

    @property
    def scope(self) -> str | None:
        """The namespace to list in: None with ``-A``."""
        return None if self.all_namespaces else self.namespace

    async def deployments(self) -> list[modeldeployment.ModelDeployment]:
        listing = await self.api.list(kube.MODELDEPLOYMENTS, self.scope)
        out = []
        for item in listing.items:
            try:
                out.append(modeldeployment.ModelDeployment.model_validate(item))
            except ValueError:
                continue  # an invalid object is reported by the operator's status, not here
        return sorted(out, key=lambda md: (md.metadata.namespace or "", md.metadata.name))

    async def deployment(self, name: str) -> modeldeployment.ModelDeployment:
        try:
            raw = await self.api.get(kube.MODELDEPLOYMENTS, self.namespace, name)
        except errors.NotFoundError:
            raise SystemExit(f"error: ModelDeployment {self.namespace}/{name} not found") from None
        return modeldeployment.ModelDeployment.model_validate(raw)

    async def devices(self) -> list[edgedevice.EdgeDevice]:
        return await fleet.Devices(self.api).devices(self.namespace)

    async def annotate(self, name: str, annotations: dict[str, str | None]) -> None:
        patch: dict[str, Any] = {"metadata": {"annotations": annotations}}
        await self.api.merge_patch(kube.MODELDEPLOYMENTS, self.namespace, name, patch)

    async def close(self) -> None:
        await self.api.close()


def run(command: Callable[[Cluster, argparse.Namespace], Awaitable[int]], args: argparse.Namespace) -> int:
    """Run an async command with a connected :class:`Cluster`; edgefleet errors print and exit 1."""

    async def connected() -> int:
        cl = Cluster(args)
        try:
            return await command(cl, args)
        finally:
            await cl.close()

    try:
        return asyncio.run(connected())
    except errors.EdgefleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


__all__ = ["Cluster", "add_cluster_arguments", "run"]
