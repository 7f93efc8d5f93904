"""edgefleet's one Kubernetes client: operator, agent, CLI, sync and the fleet simulator all talk through it.

- :mod:`~edgefleet.adapters.kube.connection`: where the API server is (kubeconfig, in-cluster service account,
  plain endpoint such as KubeEdge's MetaServer) and the shared aiohttp session.
- :mod:`~edgefleet.adapters.kube.resources`: :class:`Resource` (every URL path is built by it), the well-known
  resources, and what the client hands out (:class:`Listing`, :class:`WatchEvent`).
- :mod:`~edgefleet.adapters.kube.client`: :class:`Client`: discovery, get, paged list, create, merge patch (status
  too), server-side apply, delete, Leases, Events, and :meth:`Client.watch`, the one list-and-watch loop with
  bookmarks, resume and relist on 410 Gone.

It raises only :mod:`edgefleet.core.errors` types. :class:`edgefleet.adapters.protocols.KubeClient` is its contract;
``tests/support/fakekube.py`` is an in-memory implementation of it, and ``tests/adapters/test_kube.py`` runs the same
contract against both the fake and a real kube-apiserver.
"""

from edgefleet.adapters.kube import client, connection, resources
from edgefleet.adapters.kube.client import APPLY_PATCH, MERGE_PATCH, PAGE_SIZE, WATCH_SECONDS, Client, connect
from edgefleet.adapters.kube.connection import (
    METASERVER,
    Connection,
    Session,
    close_session,
    from_kubeconfig,
    in_cluster,
    new_session,
    plain,
)
from edgefleet.adapters.kube.connection import default as default_connection
from edgefleet.adapters.kube.resources import (
    CONFIGMAPS,
    CONTROLLER_REVISIONS,
    EDGEDEVICES,
    EVENTS,
    LEASES,
    MODELDEPLOYMENTS,
    NAMESPACES,
    SECRETS,
    Change,
    JsonObject,
    Listing,
    Resource,
    WatchEvent,
    fix_kind,
)

__all__ = [
    "APPLY_PATCH",
    "CONFIGMAPS",
    "CONTROLLER_REVISIONS",
    "EDGEDEVICES",
    "EVENTS",
    "LEASES",
    "MERGE_PATCH",
    "METASERVER",
    "MODELDEPLOYMENTS",
    "NAMESPACES",
    "PAGE_SIZE",
    "SECRETS",
    "WATCH_SECONDS",
    "Change",
    "Client",
    "Connection",
    "JsonObject",
    "Listing",
    "Resource",
    "Session",
    "WatchEvent",
    "client",
    "close_session",
    "connect",
    "connection",
    "default_connection",
    "fix_kind",
    "from_kubeconfig",
    "in_cluster",
    "new_session",
    "plain",
    "resources",
]
