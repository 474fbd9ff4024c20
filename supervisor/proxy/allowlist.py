"""What each proxy workload may reach: (domain, port) pairs from workloads.toml and, with
an expiry, from `egress-allow`. Domains are matched as Squid's `dstdomain` does: `a.b`
exactly, `.a.b` that name and every name under it."""

from __future__ import annotations

import ipaddress
import time

import msgspec

from executors.validate import normalise_host

from ..config import WorkloadSpec


class Allowed(msgspec.Struct, frozen=True, order=True):
    """One domain on one port; `expires` (epoch seconds) for a live allow, else None."""

    domain: str
    port: int
    expires: float | None = None


class LiveAllows(msgspec.Struct):
    """The live allows `egress-allow` added, per workload (state: `live.json`)."""

    workloads: dict[str, list[Allowed]] = {}


def parse_domain(entry: str) -> str:
    """A `dstdomain` value: a host name, or `.name` for it and its subdomains; never an
    IP literal (the proxy refuses those)."""
    wildcard = entry.startswith(".")
    name = entry[1:] if wildcard else entry
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        raise ValueError(f"{entry!r} is an IP address: the proxy allows names only")
    return ("." if wildcard else "") + normalise_host(name)


def static_allows(spec: WorkloadSpec, default_ports: list[int]) -> list[Allowed]:
    """The workload's `egress_allow` entries (`name`, `name:PORT`, `.name`) as allows."""
    out: list[Allowed] = []
    for entry in spec.egress_allow:
        name, sep, port = entry.rpartition(":") if ":" in entry else (entry, "", "")
        if sep and not port.isdigit():
            raise ValueError(f"egress_allow entry {entry!r}: bad port")
        domain = parse_domain(name)
        ports = [int(port)] if sep else default_ports
        out += [Allowed(domain, p) for p in ports]
    return out


def current(
    static: list[Allowed], live: list[Allowed], now: float | None = None
) -> list[tuple[str, int]]:
    """Every (domain, port) allowed now: the static ones and the unexpired live ones."""
    now = time.time() if now is None else now
    pairs = {(a.domain, a.port) for a in static}
    pairs |= {(a.domain, a.port) for a in live if a.expires is None or a.expires > now}
    return sorted(pairs)


def next_expiry(live: LiveAllows, now: float) -> float | None:
    """When the next live allow runs out (None: none will)."""
    times = [a.expires for allows in live.workloads.values() for a in allows if a.expires]
    future = [t for t in times if t > now]
    return min(future) if future else None
