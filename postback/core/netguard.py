"""Which network addresses Postback refuses to deliver to (the SSRF guard), as pure rules.

A callback URL is chosen by a customer, so without a guard a customer could make Postback
POST into its own network: the cloud metadata service, the database, an admin port on
localhost. Every address a delivery would connect to is checked here, once when the endpoint
is saved and again at connect time against the resolved address (so a DNS name that later
"rebinds" to a private address is still caught).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Each range with the reason a customer sees. Sources: RFC 6890 (special-purpose registries),
# RFC 6598 (carrier-grade NAT), RFC 4193 (IPv6 unique local), cloud metadata endpoints.
_BLOCKED: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("169.254.169.254/32", "cloud metadata address"),
        ("fd00:ec2::254/128", "cloud metadata address"),
        ("0.0.0.0/8", "'this network' address"),
        ("127.0.0.0/8", "loopback address"),
        ("10.0.0.0/8", "private address"),
        ("172.16.0.0/12", "private address"),
        ("192.168.0.0/16", "private address"),
        ("100.64.0.0/10", "carrier-grade NAT address"),
        ("169.254.0.0/16", "link-local address"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation address"),
        ("198.18.0.0/15", "benchmarking address"),
        ("198.51.100.0/24", "documentation address"),
        ("203.0.113.0/24", "documentation address"),
        ("224.0.0.0/4", "multicast address"),
        ("240.0.0.0/4", "reserved address"),
        ("255.255.255.255/32", "broadcast address"),
        ("::/128", "unspecified address"),
        ("::1/128", "loopback address"),
        ("fc00::/7", "private (unique local) address"),
        ("fe80::/10", "link-local address"),
        ("ff00::/8", "multicast address"),
        ("2001:db8::/32", "documentation address"),
        ("64:ff9b:1::/48", "local-use translation address"),
    )
)


def parse_networks(text: str) -> list[Network]:
    """``POSTBACK_ALLOW_NETWORKS``: comma-separated CIDRs or addresses; ValueError if bad."""
    networks: list[Network] = []
    for part in text.split(","):
        part = part.strip()
        if part:
            networks.append(ipaddress.ip_network(part, strict=False))
    return networks


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address hidden in an IPv6 one (::ffff:a.b.c.d, ::a.b.c.d, 6to4, NAT64)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    packed = address.packed
    if packed[:12] == bytes(12) and packed[12:] != bytes(4):  # deprecated IPv4-compatible
        return ipaddress.IPv4Address(packed[12:])
    if address in ipaddress.ip_network("64:ff9b::/96"):  # NAT64 well-known prefix
        return ipaddress.IPv4Address(packed[12:])
    return None


def blocked_reason(address: IPAddress, allowed: Sequence[Network] = ()) -> str | None:
    """Why ``address`` may not be delivered to, or None when it may.

    ``allowed`` opens ranges on purpose (development, an internal receiver). An IPv6 address
    that embeds an IPv4 one is judged by the IPv4 address too, so ``[::ffff:127.0.0.1]``
    cannot slip past the IPv4 rules.
    """
    candidates: list[IPAddress] = [address]
    inner = _embedded_ipv4(address)
    if inner is not None:
        candidates.append(inner)
    for candidate in candidates:
        if any(candidate.version == net.version and candidate in net for net in allowed):
            return None
    for candidate in candidates:
        for network, reason in _BLOCKED:
            if candidate.version == network.version and candidate in network:
                refusal = f"{reason} {candidate} is not allowed as a callback destination"
                if reason == "cloud metadata address":
                    return refusal  # never worth opening: no hint
                # The operator's way out, named where the refusal is read (an API 400, an
                # attempt's error): local testing against 127.0.0.1 is the common case.
                return (
                    f"{refusal}; to allow it (e.g. for local testing) start Postback with "
                    f"POSTBACK_ALLOW_NETWORKS={network}"
                )
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host denotes literally, in any form a resolver would accept.

    Besides dotted quads and IPv6 literals this covers the forms inet_aton() accepts and
    browsers normalise, which an attacker uses to dodge naive checks: ``0x7f000001``,
    ``2130706433``, ``0177.0.0.1``, ``127.1``.
    """
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(parts):
        return None
    numbers: list[int] = []
    for part in parts:
        try:
            if part.lower().startswith("0x"):
                numbers.append(int(part[2:], 16))
            elif len(part) > 1 and part.startswith("0"):
                numbers.append(int(part, 8))
            else:
                numbers.append(int(part, 10))
        except ValueError:
            return None
    # inet_aton: the last part fills all remaining bytes.
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    value = value * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(value)


def first_blocked(addresses: Iterable[IPAddress], allowed: Sequence[Network] = ()) -> str | None:
    """The reason for the first blocked address among a resolution's results, if any."""
    for address in addresses:
        reason = blocked_reason(address, allowed)
        if reason is not None:
            return reason
    return None


def resolved_blocked(resolved_hosts: Iterable[str], allowed: Sequence[Network] = ()) -> str | None:
    """Why a DNS answer must not be connected to, or None: the one rule shared by the check
    at save time and the resolver at connect time. ``resolved_hosts`` are the textual
    addresses a resolver returned (an IPv6 zone suffix such as ``%eth0`` is ignored)."""
    for text in resolved_hosts:
        address = literal_address(text.split("%", 1)[0])
        if address is None:
            return f"an answer that is not an address ({text!r})"
        reason = blocked_reason(address, allowed)
        if reason is not None:
            return reason
    return None
