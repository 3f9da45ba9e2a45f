"""A host and an optional port, as a Host header or an `admin_trust.allowed_hosts` entry
writes them (pure). One reading for both: the configuration validates its entries with
it, and the admin listener compares requests against what it read (proxy/admin/trust.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Authority:
    """A host and an optional port, as in a Host header or an allowed_hosts entry."""

    host: str
    """Lowercase, without brackets or a trailing dot; an IP literal in its short form."""
    port: int | None


def normalise_host(host: str) -> str:
    """The comparable form of a host name or IP literal (brackets, case, trailing dot,
    IPv6 zone and IPv4-mapped forms taken off)."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.rstrip(".").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def parse_authority(text: str) -> Authority | None:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` (a bare IPv6 literal too);
    None when it is not one of these."""
    text = text.strip()
    if not text or any(c.isspace() or c in "/?#@\\" for c in text):
        return None
    port: int | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return None
    elif text.count(":") > 1:  # a bare IPv6 literal: no port can be told apart
        try:
            ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return None
        host, port_text = text, None
    else:
        host, sep, after = text.partition(":")
        port_text = after if sep else None
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None
        port = int(port_text)
    if not host:
        return None
    return Authority(normalise_host(host), port)
