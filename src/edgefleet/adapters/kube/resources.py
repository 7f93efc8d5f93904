"""Resource types and the objects the client hands out: where every URL path is built, and what a watch yields.

A :class:`Resource` names a collection (API group, version, plural) with its ``kind`` and scope; the client builds
every request path from one (:meth:`Resource.path`), and discovery (:meth:`edgefleet.adapters.kube.Client.discover`)
returns them for kinds it did not know beforehand. The well-known resources edgefleet uses are defined here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal
from urllib.parse import quote

from edgefleet.api import common, edgedevice, modeldeployment

JsonObject = dict[str, Any]


def group_version_path(group: str, version: str) -> str:
    """The discovery path of an API group version: ``/api/v1`` for the core group (pure).

    >>> group_version_path("", "v1"), group_version_path("apps", "v1")
    ('/api/v1', '/apis/apps/v1')
    """
    return f"/api/{version}" if not group else f"/apis/{group}/{version}"


@dataclasses.dataclass(frozen=True)
class Resource:
    """A resource type: API group ('' for the core group), version, plural, kind, and whether it is namespaced."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """``group/version``, or ``version`` for the core group (pure)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The URL path of a collection or object (pure); ``namespace`` None means every namespace.

        >>> EDGEDEVICES.path("factory-1", "cam-7", "status")
        '/apis/edgefleet.io/v1alpha1/namespaces/factory-1/edgedevices/cam-7/status'
        >>> SECRETS.path("default"), NAMESPACES.path("ignored", "edge")
        ('/api/v1/namespaces/default/secrets', '/api/v1/namespaces/edge')
        """
        base = group_version_path(self.group, self.version)
        if namespace is not None and self.namespaced:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
        if subresource is not None:
            base += f"/{subresource}"
        return base


EDGEDEVICES = Resource(common.GROUP, common.VERSION, edgedevice.PLURAL, edgedevice.KIND)
MODELDEPLOYMENTS = Resource(common.GROUP, common.VERSION, modeldeployment.PLURAL, modeldeployment.KIND)
SECRETS = Resource("", "v1", "secrets", "Secret")
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
EVENTS = Resource("", "v1", "events", "Event")
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
CONTROLLER_REVISIONS = Resource("apps", "v1", "controllerrevisions", "ControllerRevision")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
WELL_KNOWN = (EDGEDEVICES, MODELDEPLOYMENTS, SECRETS, CONFIGMAPS, EVENTS, NAMESPACES, CONTROLLER_REVISIONS, LEASES)


def fix_kind(obj: JsonObject, kind: str | None) -> JsonObject:
    """Repair a ``kind`` that differs from the expected one only in case (KubeEdge MetaServer's cache) (pure).

    >>> fix_kind({"kind": "Edgedevice"}, "EdgeDevice")["kind"]
    'EdgeDevice'
    >>> fix_kind({"kind": "Lease"}, "EdgeDevice")["kind"]
    'Lease'
    """
    if kind is not None and str(obj.get("kind", kind)).lower() == kind.lower():
        obj["kind"] = kind
    return obj


@dataclasses.dataclass(frozen=True)
class Listing:
    """A complete list of a collection (every page) and the ``resourceVersion`` a watch continues from."""

    items: list[JsonObject]
    resource_version: str


@dataclasses.dataclass(frozen=True)
class WatchEvent:
    """One change of a watched collection: ADDED, MODIFIED or DELETED (bookmarks never reach a consumer)."""

    type: Literal["ADDED", "MODIFIED", "DELETED"]
    object: JsonObject


Change = Listing | WatchEvent
"""What :meth:`edgefleet.adapters.kube.Client.watch` yields: a Listing after every (re)list, then the changes."""


__all__ = [
    "CONFIGMAPS",
    "CONTROLLER_REVISIONS",
    "EDGEDEVICES",
    "EVENTS",
    "LEASES",
    "MODELDEPLOYMENTS",
    "NAMESPACES",
    "SECRETS",
    "WELL_KNOWN",
    "Change",
    "JsonObject",
    "Listing",
    "Resource",
    "WatchEvent",
    "fix_kind",
    "group_version_path",
]
