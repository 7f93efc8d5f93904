"""``edgefleet dashboard``'s server side: a watch-fed view of the fleet (:mod:`.cache`) and the read-only HTTP and
server-sent-event server that ships the page in ``static/`` (:mod:`.server`). The pure view-model is in
:mod:`edgefleet.core.fleetmap` and :mod:`edgefleet.core.rolloutview`."""

from edgefleet.adapters.dashboard import cache, server
from edgefleet.adapters.dashboard.cache import FleetCache, Subscription
from edgefleet.adapters.dashboard.server import CSP, Server, is_loopback

__all__ = ["CSP", "FleetCache", "Server", "Subscription", "cache", "is_loopback", "server"]
