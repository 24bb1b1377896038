"""Client addresses behind reverse proxies, and address allowlists."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    """Return the IP networks named by ``values`` (addresses or CIDR ranges).

    Raises:
        ValueError: a value is neither.
    """
    return [ipaddress.ip_network(value.strip(), strict=False) for value in values]


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(value: str, networks: Iterable[IPNetwork]) -> bool:
    """Return True if address ``value`` lies in one of ``networks``; False for a malformed address."""
    address = _address(value)
    return address is not None and any(address in network for network in networks)


def client_address(peer: str | None, forwarded_for: str | None, trusted_proxies: Iterable[IPNetwork]) -> str:
    """Return the address of the client that made a request.

    ``X-Forwarded-For`` is believed only from a trusted proxy, and only up to the first address
    (from the right) that is not itself a trusted proxy: a client cannot forge its way in by
    sending the header itself.
    """
    trusted = list(trusted_proxies)
    client = peer or ""
    if not forwarded_for or not in_networks(client, trusted):
        return client
    for hop in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
        client = hop
        if not in_networks(hop, trusted):
            break
    return client
