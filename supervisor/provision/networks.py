"""What the workloads' firewall is made from, besides the workloads themselves: the LAN
ranges (always dropped), the resolvers workloads may ask, this machine's own subnets,
and each workload's static allow entries, resolved at provisioning time."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from executors.addresses import parse_answers, public_address

from ..config import WorkloadSpec
from .box import Box, uid_of
from .plan import ProvisionError

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
LAN4 = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "0.0.0.0/8",
)
LAN6 = ("fc00::/7", "fe80::/10", "::1/128", "::/128")


@dataclass(frozen=True)
class Static:
    """A workload's static allow entries, split by address family and whether a port is given."""

    v4: list[Net]
    v6: list[Net]
    p4: list[tuple[Net, int]]
    p6: list[tuple[Net, int]]


def parse_entry(entry: str) -> tuple[str, int | None]:
    """`host`, `host:443`, `203.0.113.0/24:443`, `[2001:db8::/32]:443` -> (what, port)."""
    if entry.startswith("["):
        inside, _, rest = entry[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
        if rest and port is None:
            raise ProvisionError(f"egress_allow entry {entry!r}: expected [IPv6]:PORT")
        return inside, port
    if entry.count(":") == 1:
        what, _, port_text = entry.partition(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ProvisionError(f"egress_allow entry {entry!r}: bad port")
        return what, int(port_text)
    return entry, None


def resolve(host: str, user: str) -> list[str]:
    """Public addresses of `host`, resolved as the workload's user (never by root)."""
    uid = uid_of(user)
    if uid is None:
        raise ProvisionError(f"user {user} does not exist")
    out = subprocess.run(
        ["getent", "ahosts", host],
        capture_output=True,
        text=True,
        user=uid,
        timeout=30,
        check=False,
    )
    answers = parse_answers(out.stdout)
    if not answers:
        raise ProvisionError(f"egress_allow host {host!r} did not resolve")
    try:
        return [str(public_address(a)) for a in answers]
    except ValueError as exc:
        raise ProvisionError(f"egress_allow host {host!r}: {exc}") from None


def static_entries(spec: WorkloadSpec) -> Static:
    """The workload's egress_allow entries as networks (host names resolved)."""
    st = Static([], [], [], [])
    for entry in spec.egress_allow:
        what, port = parse_entry(entry)
        try:
            nets = [ipaddress.ip_network(what, strict=False)]
        except ValueError:
            nets = [ipaddress.ip_network(a) for a in resolve(what, spec.user)]
        for net in nets:
            if port is None:
                (st.v4 if net.version == 4 else st.v6).append(net)
            else:
                (st.p4 if net.version == 4 else st.p6).append((net, port))
    return st


def local_subnets() -> list[Net]:
    """The networks this machine's interfaces are on (pyroute2), but not host routes."""
    from pyroute2 import IPRoute

    nets: list[Net] = []
    with IPRoute() as ipr:
        for msg in ipr.get_addr():
            addr = msg.get_attr("IFA_ADDRESS")
            if addr:
                net = ipaddress.ip_interface(f"{addr}/{msg['prefixlen']}").network
                if net.prefixlen < net.max_prefixlen:
                    nets.append(net)
    return nets


def resolvers(box: Box) -> list[str]:
    """Resolver addresses workloads may query: configured, else /etc/resolv.conf's."""
    if box.settings.provision.dns:
        return list(box.settings.provision.dns)
    found = []
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                found.append(parts[1].split("%")[0])
    except OSError:
        pass
    return found


def collapse(nets: Iterable[Net], version: int) -> list[Net]:
    if version == 4:
        return list(
            ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv4Network))
        )
    return list(
        ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv6Network))
    )
