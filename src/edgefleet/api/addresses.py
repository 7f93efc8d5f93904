"""One address policy for every URI edgefleet fetches: what a host *is* once the HTTP client has read it. Pure.

A check on the text of a URI is only as good as its agreement with the client that later connects. Clients read
hosts generously: ``0xa9fea9fe``, ``0251.0376.0251.0376`` and ``2852039166`` are all ``169.254.169.254`` to
``getaddrinfo``; ``169。254。169。254`` (ideographic full stops) becomes dotted after IDNA mapping;
``[::ffff:a9fe:a9fe]`` is the same IPv4 address in IPv6 clothing. So the policy refuses every host form that a client
could read as something other than what it says, and judges only canonical ones:

- the authority is ``host[:port]`` in ASCII: no credentials, no percent-escapes, no zone ids, no non-ASCII characters
  (write an internationalised name in its ``xn--`` form);
- a host whose last label is a number (``[0-9]+`` or ``0x...``) must be a canonical dotted quad;
- a bracketed host must be a plain IPv6 address: not IPv4-mapped (``::ffff:0:0/96``), no zone;
- the address of an IP literal must not be in :data:`NEVER` (link-local, cloud metadata, unspecified, multicast,
  reserved), and a name must not be a known metadata name.

That is the *static* check (:func:`check_uri`), applied by the pydantic models and mirrored, rule for rule, by the
CRD's CEL rule (:func:`cel_rule`), so the API server and every process that parses a spec accept exactly the same
URIs. The fetchers (:mod:`edgefleet.adapters.artifacts`, :mod:`edgefleet.compiler.sources`) add the *connect-time*
check: every address a name resolves to, and the address actually connected to (also after a redirect), must pass
:meth:`FetchPolicy.check_address`, which also refuses loopback and unique-local addresses (:data:`LOCAL`) unless the
deployment allows them (``EDGEFLEET_FETCH_ALLOW=loopback,unique-local``; the test harness sets it, since its servers
listen on 127.0.0.1). Private RFC 1918 ranges are allowed: artifact stores live there.

Worked example::

    check_uri("http://store.factory.local:8080/artifacts/x")   -> accepted (a name; checked again when resolved)
    check_uri("http://0xa9fea9fe/latest")                      -> ValueError: not a canonical dotted quad
    check_uri("http://[::ffff:169.254.169.254]/")              -> ValueError: IPv4-mapped IPv6
    FetchPolicy().check_address(ip_address("127.0.0.1"))       -> "loopback address 127.0.0.1 ..." (refused)
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ENV_ALLOW = "EDGEFLEET_FETCH_ALLOW"
"""Comma-separated categories of :data:`LOCAL` that fetchers may connect to (``loopback``, ``unique-local``)."""

# Never fetched, by any process, whatever the configuration: (category, network). IPv6 networks carry the regular
# expression that recognises their literals in any textual form (the CEL rule cannot afford the ip library's cost).
NEVER: tuple[tuple[str, str], ...] = (
    ("unspecified", "0.0.0.0/8"),  # 0.0.0.0 connects to the local host on Linux
    ("link-local", "169.254.0.0/16"),  # AWS/GCP/Azure/OpenStack metadata, ECS task credentials (169.254.170.2)
    ("metadata", "100.100.100.200/32"),  # Alibaba Cloud metadata
    ("multicast", "224.0.0.0/4"),
    ("reserved", "240.0.0.0/4"),  # includes the broadcast address
    ("unspecified", "::/128"),
    ("link-local", "fe80::/10"),
    ("metadata", "fd00:ec2::/32"),  # AWS IPv6 metadata (fd00:ec2::254) and its prefix
    ("multicast", "ff00::/8"),
)
_IPV6_LITERAL = {
    "::/128": r"\[[0:]+\]",
    "fe80::/10": r"\[(?i:fe[89ab][0-9a-f]):",
    "fd00:ec2::/32": r"\[(?i:fd00:0?ec2):",
    "ff00::/8": r"\[(?i:ff[0-9a-f][0-9a-f]):",
}
# Fetched only where the deployment allows it (FetchPolicy.allow): the device itself and site-local IPv6.
LOCAL: tuple[tuple[str, str], ...] = (
    ("loopback", "127.0.0.0/8"),
    ("loopback", "::1/128"),
    ("unique-local", "fc00::/7"),
)
METADATA_NAMES = (
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
)
LOCAL_NAMES = ("localhost",)

_NEVER_NETS = tuple((c, ipaddress.ip_network(n)) for c, n in NEVER)
_LOCAL_NETS = tuple((c, ipaddress.ip_network(n)) for c, n in LOCAL)

# The static check is regular expressions only, applied the same way by Python (re) and by the CEL rule (RE2 agrees
# with re on this subset), so the API server and the pydantic models cannot disagree. Each is anchored at the start.
_SCHEME = r"^[a-z][a-z0-9+.-]*://"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_QUAD = rf"{_OCTET}(\.{_OCTET}){{3}}"
_PORT = r"(:[0-9]{1,5})?"
_END = r"([/?#]|$)"


def _ipv4_literal(network: str) -> str:
    """A regular expression for the canonical dotted quads of an IPv4 network (pure).

    >>> print(_ipv4_literal("169.254.0.0/16"))
    169\\.254(\\.[0-9]+){2}
    >>> print(_ipv4_literal("240.0.0.0/4")[:16])
    (240|241|242|243
    """
    net = ipaddress.IPv4Network(network)
    octets = [int(o) for o in str(net.network_address).split(".")]
    full, rest = divmod(net.prefixlen, 8)
    parts = [str(o) for o in octets[:full]]
    if rest and full < 4:
        span = range(octets[full], octets[full] + 2 ** (8 - rest))
        parts.append("(" + "|".join(str(o) for o in span) + ")")
        full += 1
    head = r"\.".join(parts)
    tail = 4 - full
    return head + (rf"(\.[0-9]+){{{tail}}}" if tail else "")


def _cel_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclasses.dataclass(frozen=True)
class Rule:
    """One regular expression of the static check: the URI must (``required``) or must not match ``pattern``;
    a refusing rule does not apply to a URI that matches ``unless``."""

    pattern: str
    required: bool
    message: str
    unless: str | None = None

    def refuses(self, uri: str) -> bool:
        """Whether this rule refuses ``uri`` (pure)."""
        found = re.search(self.pattern, uri) is not None
        if self.required:
            return not found
        return found and (self.unless is None or re.search(self.unless, uri) is None)

    def cel(self) -> str:
        """The same rule in CEL (``matches`` is an unanchored search, like ``re.search``)."""
        match = f"self.matches({_cel_string(self.pattern)})"
        if self.required:
            return match
        if self.unless is None:
            return "!" + match
        return f"(!{match} || self.matches({_cel_string(self.unless)}))"


def _rules() -> tuple[Rule, ...]:
    names = "|".join(n.replace(".", r"\.") for n in METADATA_NAMES)
    rules = [
        Rule(r"[\x00-\x20\x7f]", False, "must not contain spaces or control characters"),
        Rule(_SCHEME + r"[^/?#]*@", False, "must not carry credentials (user:password@); use a Secret"),
        Rule(
            _SCHEME + r"([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])" + _PORT + _END,
            True,
            "the host must be an ASCII name (internationalised names in their xn-- form), a dotted quad or a "
            "bracketed IPv6 address, optionally with a port; no percent-escapes, zone ids or other characters",
        ),
        Rule(r"%([^0-9A-Fa-f]|.[^0-9A-Fa-f]|.?$)", False, "has a malformed percent-escape (% and two hex digits)"),
        Rule(
            _SCHEME + r"([A-Za-z0-9._-]*\.)?(0[xX][0-9A-Fa-f]*|[0-9]+)\.?" + _PORT + _END,
            False,
            "host {host} is a number but not a canonical dotted quad (a.b.c.d); clients read such forms as an address",
            unless=_SCHEME + _QUAD + _PORT + _END,
        ),
        Rule(_SCHEME + r"(?i:" + names + r")\.?" + _PORT + _END, False, "host {host} is a cloud metadata name"),
        Rule(
            _SCHEME + r"\[(?i:[0:]*:ffff):", False, "host [{host}] is an IPv4-mapped IPv6 address; write the IPv4 one"
        ),
    ]
    for category, network in NEVER:
        literal = _IPV6_LITERAL.get(network) or _ipv4_literal(network) + _PORT + _END
        rules.append(
            Rule(_SCHEME + literal, False, f"host {{host}} is a {category} address ({network}), never fetched")
        )
    return tuple(rules)


RULES = _rules()


class AddressError(ValueError):
    """A URI or address the policy refuses; the message says why and what to do."""


def _host(uri: str) -> str:
    """The host part of a URI's authority, lower-cased, without brackets (for messages only)."""
    authority = re.split(r"[/?#]", uri.split("://", 1)[-1], maxsplit=1)[0].rsplit("@", 1)[-1]
    if authority.startswith("[") and "]" in authority:
        return authority[1 : authority.index("]")].lower()
    return authority.rsplit(":", 1)[0].lower() if ":" in authority else authority.lower()


def classify(address: IPAddress) -> tuple[str, bool] | None:
    """``(category, never)`` of an address in :data:`NEVER` or :data:`LOCAL`, ``None`` for an ordinary one (pure).

    An IPv4-mapped IPv6 address is judged as the IPv4 address it carries (that is where the kernel connects).

    >>> classify(ipaddress.ip_address("169.254.169.254")), classify(ipaddress.ip_address("::ffff:127.0.0.1"))
    (('link-local', True), ('loopback', False))
    >>> classify(ipaddress.ip_address("10.1.2.3")) is None
    True
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for category, net in _NEVER_NETS:
        if address.version == net.version and address in net:
            return category, True
    for category, net in _LOCAL_NETS:
        if address.version == net.version and address in net:
            return category, False
    return None


def check_uri(uri: str) -> str:
    """Refuse URIs whose host is not canonical or is never fetched (pure; see the module docstring and
    :data:`RULES`, which the CRD's CEL rule applies too).

    >>> check_uri("https://models.example.com/a.onnx")
    'https://models.example.com/a.onnx'
    >>> check_uri("http://0x7f000001:8080/x")
    Traceback (most recent call last):
    ...
    edgefleet.api.addresses.AddressError: host 0x7f000001 is a number but not a canonical dotted quad (a.b.c.d); \
clients read such forms as an address
    """
    for rule in RULES:
        if rule.refuses(uri):
            raise AddressError(rule.message.format(host=_host(uri)))
    return uri


def cel_rule() -> str:
    """The CEL expression of :func:`check_uri` for the CRD (pure): the same regular expressions, in the same order.

    >>> cel_rule().count("self.matches(") == len(RULES) + 1  # the numeric rule has an "unless"
    True
    """
    return " && ".join(rule.cel() for rule in RULES)


CEL_RULE = {
    "rule": cel_rule(),
    "message": (
        "the host must be canonical (ASCII name, dotted quad or plain IPv6), carry no credentials, and not be a "
        "link-local, cloud metadata, unspecified, multicast or reserved address"
    ),
}


@dataclasses.dataclass(frozen=True)
class FetchPolicy:
    """The connect-time policy of a fetcher: :data:`NEVER` always refused, :data:`LOCAL` categories only if allowed.

    >>> FetchPolicy(allow=frozenset({"loopback"})).check_address(ipaddress.ip_address("127.0.0.1")) is None
    True
    >>> FetchPolicy().check_address(ipaddress.ip_address("fd12::1"))
    'unique-local address fd12::1 is not fetched here (allow it with EDGEFLEET_FETCH_ALLOW=unique-local)'
    """

    allow: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, extra: Iterable[str] = ()) -> FetchPolicy:
        """The policy of this process: :data:`ENV_ALLOW` plus ``extra`` (e.g. from the agent's config)."""
        raw = (os.environ if environ is None else environ).get(ENV_ALLOW, "")
        allow = {part.strip() for part in raw.split(",") if part.strip()} | set(extra)
        return cls(frozenset(allow))

    def check_address(self, address: IPAddress) -> str | None:
        """Why ``address`` must not be connected to, or ``None`` when it may (pure)."""
        found = classify(address)
        if found is None:
            return None
        category, never = found
        if never:
            return f"{category} address {address} is never fetched"
        if category in self.allow:
            return None
        return f"{category} address {address} is not fetched here (allow it with {ENV_ALLOW}={category})"

    def check_name(self, host: str) -> str | None:
        """Why the name ``host`` must not be resolved at all, or ``None`` (pure): metadata and local names."""
        name = host.lower().rstrip(".")
        if name in METADATA_NAMES:
            return f"host {name} is a cloud metadata name and is never fetched"
        if (name in LOCAL_NAMES or name.endswith(".localhost")) and "loopback" not in self.allow:
            return f"host {name} is the local host and is not fetched here (allow it with {ENV_ALLOW}=loopback)"
        return None


__all__ = [
    "CEL_RULE",
    "ENV_ALLOW",
    "LOCAL",
    "NEVER",
    "RULES",
    "AddressError",
    "FetchPolicy",
    "IPAddress",
    "Rule",
    "cel_rule",
    "check_uri",
    "classify",
]
