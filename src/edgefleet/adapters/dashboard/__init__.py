"""``edgefleet dashboard``'s server side: a watch-fed view of the fleet (:mod:`.cache`, over the objects parsed at the
boundary in :mod:`.objects`), what each open page gets (:mod:`.pages`), and the read-only HTTP and server-sent-event
server that ships the page in ``static/`` (:mod:`.server`). The pure view-model is in :mod:`edgefleet.core.fleetmap` and
:mod:`edgefleet.core.rolloutview`."""

from edgefleet.adapters.dashboard import cache, objects, pages, server
from edgefleet.adapters.dashboard.cache import FleetCache
from edgefleet.adapters.dashboard.pages import Subscription
from edgefleet.adapters.dashboard.server import CSP, Server, is_loopback

__all__ = ["CSP", "FleetCache", "Server", "Subscription", "cache", "is_loopback", "objects", "pages", "server"]
