"""Resolver answers, as the executors and provisioning read them: `getent ahosts` output
and the one test of whether an address is public (no private, loopback, link-local,
CGNAT, multicast, reserved or metadata address, and none hidden in an IPv4-mapped one)."""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def public_address(text: str) -> IPAddress:
    """Parse a resolver answer and insist it is a public address; ValueError otherwise."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    for a in (address, mapped):
        if a is not None and (not a.is_global or a.is_multicast or a.is_reserved):
            raise ValueError(f"{text} is not a public address")
    return address


def parse_answers(output: str) -> list[str]:
    """Addresses in `getent ahosts` output (first column), in order, without repeats."""
    seen: list[str] = []
    for line in output.splitlines():
        first = line.split(maxsplit=1)[0] if line.strip() else ""
        if first and first not in seen:
            seen.append(first)
    return seen
