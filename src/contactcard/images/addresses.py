"""Which addresses an image may be fetched from (docs/security.md, rules 4 and 7)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .urls import ImageUrl

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges that `is_global` has not always covered (it varies across Python
# versions), listed so the policy does not depend on the interpreter.
_NON_PUBLIC_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes broadcast
    )
)
_NON_PUBLIC_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # deprecated site-local
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a v6 address carries, if it is one of the wrappings
    that route to (or are treated by stacks as) that IPv4 address."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or ip in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            # `::` and `::1` unwrap to 0.0.0.0 / 0.0.0.1, which are refused too.
            return is_public_address(inner)
        if ip.scope_id or any(ip in net for net in _NON_PUBLIC_V6):
            return False
    elif any(ip in net for net in _NON_PUBLIC_V4):
        return False
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback or ip.is_link_local or ip.is_private
    )


def _normalise_entry(entry: str) -> str:
    return entry.strip().lower()


@dataclass(frozen=True)
class HostPolicy:
    """Public addresses are always fine; private ones only when local work
    switches them on, either all of them or named `host[:port]` entries.

    An entry without a port allows every port of that host.
    """

    allow_private: bool = False
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        normalised = frozenset(_normalise_entry(e) for e in self.allowed_hosts if e.strip())
        object.__setattr__(self, "allowed_hosts", normalised)

    @property
    def allow_http(self) -> bool:
        return self.allow_private or bool(self.allowed_hosts)

    def is_allowlisted(self, url: ImageUrl) -> bool:
        return url.host_port in self.allowed_hosts or url.host_literal in self.allowed_hosts

    def permits(self, url: ImageUrl, ip: IPAddress) -> bool:
        if is_public_address(ip):
            return True
        return self.allow_private or self.is_allowlisted(url)
