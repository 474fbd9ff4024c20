"""The `inet clawvisor` nftables table: default-deny egress per workload uid.

Built as libnftables JSON and replaced in one transaction (the kernel applies all of it
or none). For each workload uid, in order:

    cut          its uid is in @cut (a trigger cut its network): drop
    established  replies and related traffic of allowed connections: accept
    dns          to a configured resolver, port 53: accept
    host         to one of its host_services (address . port): accept
    metadata     to a cloud metadata address: drop
    lan          to RFC 1918, link-local, CGNAT, loopback, ULA, or this machine's own
                 subnets (found with pyroute2): drop
    internet     `open`: accept; `allowlist`: its static and dynamic allow sets: accept
    default      drop

Every verdict rule has a named counter `W_<reason>` (the monitor reads them). Elements
that `egress-allow` added to the dynamic sets and that still have time left survive a
re-provision. Whether the table needs replacing is decided by comparing the desired
spec, and the table as listed after the last apply, with what is there now, so a rule
deleted by hand is noticed and put back.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

from executors.addresses import parse_answers, public_address
from executors.nft import (
    CUT_SET,
    DYNAMIC_SETS,
    FAMILY,
    REASONS,
    TABLE,
    Nft,
    NftError,
    set_name,
    slug,
)

from ..config import WorkloadSpec
from ..persist import read_or_none, write_atomic
from .box import Box, uid_of
from .plan import Plan, ProvisionError

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
STATE_FILE = "firewall.json"


def counter_name(workload: str, reason: str) -> str:
    """The named counter for one verdict of one workload."""
    return f"{slug(workload)}_{reason}"


def chain_name(workload: str) -> str:
    return f"wl_{slug(workload)}"


def _tbl(**kw: Any) -> dict[str, Any]:
    return {"family": FAMILY, "table": TABLE, **kw}


def _match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _daddr(v: int) -> dict[str, Any]:
    return {"payload": {"protocol": "ip" if v == 4 else "ip6", "field": "daddr"}}


_L4 = _match({"meta": {"key": "l4proto"}}, {"set": ["tcp", "udp"]})
_DPORT = {"payload": {"protocol": "th", "field": "dport"}}


def _nfproto(v: int) -> dict[str, Any]:
    return _match({"meta": {"key": "nfproto"}}, "ipv4" if v == 4 else "ipv6")


def _prefix(net: Net) -> Any:
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


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


def _collapse(nets: Iterable[Net], version: int) -> list[Net]:
    if version == 4:
        return list(
            ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv4Network))
        )
    return list(
        ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv6Network))
    )


def build(
    box: Box, static: dict[str, Static], uids: dict[str, int], subnets: list[Net]
) -> list[dict[str, Any]]:
    """The commands that create the whole table (without dynamic elements)."""
    extra = [ipaddress.ip_network(n, strict=False) for n in box.settings.provision.lan]
    lan = [ipaddress.ip_network(n) for n in (*LAN4, *LAN6)] + extra + subnets
    meta = [ipaddress.ip_address(a) for a in box.settings.provision.metadata]
    dns = [ipaddress.ip_address(a) for a in resolvers(box)]
    cmds: list[dict[str, Any]] = [
        {
            "add": {
                "set": _tbl(
                    name="lan4",
                    type="ipv4_addr",
                    flags=["interval"],
                    elem=[_prefix(n) for n in _collapse(lan, 4)],
                )
            }
        },
        {
            "add": {
                "set": _tbl(
                    name="lan6",
                    type="ipv6_addr",
                    flags=["interval"],
                    elem=[_prefix(n) for n in _collapse(lan, 6)],
                )
            }
        },
        {"add": {"set": _tbl(name=CUT_SET, type="uid")}},
        {
            "add": {
                "chain": _tbl(name="output", type="filter", hook="output", prio=0, policy="accept")
            }
        },
    ]
    for v in (4, 6):
        addrs = [str(a) for a in dns if a.version == v]
        cmds.append(
            {
                "add": {
                    "set": _tbl(
                        name=f"dns{v}", type=f"ipv{v}_addr", **({"elem": addrs} if addrs else {})
                    )
                }
            }
        )
        maddrs = [str(a) for a in meta if a.version == v]
        cmds.append(
            {
                "add": {
                    "set": _tbl(
                        name=f"meta{v}", type=f"ipv{v}_addr", **({"elem": maddrs} if maddrs else {})
                    )
                }
            }
        )
    for name in sorted(box.workloads):
        cmds += _workload(name, box.workloads[name], static[name], uids[name])
    return cmds


def _workload(name: str, spec: WorkloadSpec, st: Static, uid: int) -> list[dict[str, Any]]:
    chain = chain_name(name)
    cmds: list[dict[str, Any]] = [{"add": {"chain": _tbl(name=chain)}}]
    for reason in REASONS:
        cmds.append({"add": {"counter": _tbl(name=counter_name(name, reason))}})
    for kind, typ in (
        ("allow4", "ipv4_addr"),
        ("allow6", "ipv6_addr"),
        ("allowp4", ["ipv4_addr", "inet_service"]),
        ("allowp6", ["ipv6_addr", "inet_service"]),
    ):
        cmds.append({"add": {"set": _tbl(name=set_name(kind, name), type=typ, flags=["timeout"])}})
    for kind, typ, elems in (
        ("static4", "ipv4_addr", [_prefix(n) for n in _collapse(st.v4, 4)]),
        ("static6", "ipv6_addr", [_prefix(n) for n in _collapse(st.v6, 6)]),
        (
            "staticp4",
            ["ipv4_addr", "inet_service"],
            [{"concat": [_prefix(n), p]} for n, p in st.p4],
        ),
        (
            "staticp6",
            ["ipv6_addr", "inet_service"],
            [{"concat": [_prefix(n), p]} for n, p in st.p6],
        ),
    ):
        cmds.append(
            {
                "add": {
                    "set": _tbl(
                        name=set_name(kind, name),
                        type=typ,
                        flags=["interval"],
                        **({"elem": elems} if elems else {}),
                    )
                }
            }
        )

    def rule(*expr: dict[str, Any], reason: str, verdict: str) -> dict[str, Any]:
        return {
            "add": {
                "rule": _tbl(
                    chain=chain,
                    expr=[*expr, {"counter": counter_name(name, reason)}, {verdict: None}],
                )
            }
        }

    cmds.append(
        rule(_match({"meta": {"key": "skuid"}}, f"@{CUT_SET}"), reason="cut", verdict="drop")
    )
    cmds.append(
        rule(
            _match({"ct": {"key": "state"}}, ["established", "related"], op="in"),
            reason="est",
            verdict="accept",
        )
    )
    for v in (4, 6):
        cmds.append(
            rule(
                _nfproto(v),
                _L4,
                _match(_DPORT, 53),
                _match(_daddr(v), f"@dns{v}"),
                reason="dns",
                verdict="accept",
            )
        )
    services: dict[int, list[Any]] = {4: [], 6: []}
    for svc in spec.host_services:
        addr, _, port = svc.rpartition(":")
        ip = ipaddress.ip_address(addr.strip("[]"))
        services[ip.version].append({"concat": [str(ip), int(port)]})
    for v in (4, 6):
        if services[v]:
            cmds.append(
                rule(
                    _nfproto(v),
                    _L4,
                    _match({"concat": [_daddr(v), _DPORT]}, {"set": services[v]}),
                    reason="host",
                    verdict="accept",
                )
            )
    for v in (4, 6):
        cmds.append(
            rule(_nfproto(v), _match(_daddr(v), f"@meta{v}"), reason="drop_meta", verdict="drop")
        )
        cmds.append(
            rule(_nfproto(v), _match(_daddr(v), f"@lan{v}"), reason="drop_lan", verdict="drop")
        )
    if spec.internet == "open":
        cmds.append(rule(reason="accept", verdict="accept"))
    elif spec.internet == "allowlist":
        for v in (4, 6):
            for kind in (f"allow{v}", f"static{v}"):
                cmds.append(
                    rule(
                        _nfproto(v),
                        _match(_daddr(v), "@" + set_name(kind, name)),
                        reason="accept",
                        verdict="accept",
                    )
                )
            for kind in (f"allowp{v}", f"staticp{v}"):
                cmds.append(
                    rule(
                        _nfproto(v),
                        _L4,
                        _match({"concat": [_daddr(v), _DPORT]}, "@" + set_name(kind, name)),
                        reason="accept",
                        verdict="accept",
                    )
                )
    cmds.append(rule(reason="drop", verdict="drop"))
    cmds.append(
        {
            "add": {
                "rule": _tbl(
                    chain="output",
                    expr=[_match({"meta": {"key": "skuid"}}, uid), {"jump": {"target": chain}}],
                )
            }
        }
    )
    return cmds


def current_table(nft: Nft) -> list[dict[str, Any]] | None:
    """The table as listed now, or None if it does not exist."""
    try:
        out = nft.run({"list": {"table": {"family": FAMILY, "name": TABLE}}})
    except NftError:
        return None
    return [x for x in (out or {}).get("nftables", []) if "metainfo" not in x]


def live_elements(listing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Commands re-adding dynamic set elements that still have time left."""
    cmds = []
    for item in listing:
        s = item.get("set")
        if not s or not s["name"].startswith(tuple(f"{k}_" for k in DYNAMIC_SETS)):
            continue
        elems = [
            e
            for e in s.get("elem", [])
            if isinstance(e, dict) and e.get("elem", {}).get("expires", 0) > 1
        ]
        if elems:
            cmds.append({"add": {"element": _tbl(name=s["name"], elem=elems)}})
    return cmds


def fingerprint(listing: list[dict[str, Any]]) -> str:
    """A hash of the table's structure: no handles, counter values or dynamic elements."""

    def clean(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {
                k: clean(v)
                for k, v in obj.items()
                if k not in ("handle", "packets", "bytes", "expires")
            }
        if isinstance(obj, list):
            return [clean(v) for v in obj]
        return obj

    items = []
    for item in listing:
        s = item.get("set")
        if s and s["name"].startswith(tuple(f"{k}_" for k in DYNAMIC_SETS)):
            items.append(clean({"set": {k: v for k, v in s.items() if k != "elem"}}))
        else:
            items.append(clean(item))
    items.sort(key=lambda x: json.dumps(x, sort_keys=True))
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()


class FirewallState(msgspec.Struct):
    """What the last apply produced, to tell a changed spec or a hand edit from no change."""

    spec: str
    table: str


def apply(commands: list[dict[str, Any]], state_path: Path, spec_hash: str) -> None:
    """Replace the table in one transaction, keeping live dynamic elements."""
    nft = Nft()
    table = {"family": FAMILY, "name": TABLE}
    keep = live_elements(current_table(nft) or [])
    batch = [
        {"add": {"table": table}},
        {"delete": {"table": table}},
        {"add": {"table": table}},
        *commands,
        *keep,
    ]
    try:
        nft.run(*batch)
    except NftError as exc:
        raise ProvisionError(
            f"nftables refused the ruleset (the old one stays whole): {exc}"
        ) from None
    listing = current_table(nft) or []
    write_atomic(
        state_path, msgspec.json.encode(FirewallState(spec=spec_hash, table=fingerprint(listing)))
    )


def plan_firewall(box: Box, plan: Plan) -> None:
    """Plan replacing the table if the spec changed or the table drifted."""
    uids: dict[str, int] = {}
    for name, spec in box.workloads.items():
        uid = uid_of(spec.user)
        if uid is None:
            uid = spec.uid if spec.uid is not None else -1
        uids[name] = uid
    missing_users = [n for n, u in uids.items() if u < 0]
    static = {
        n: (static_entries(s) if uids[n] >= 0 else Static([], [], [], []))
        for n, s in box.workloads.items()
    }
    commands = build(box, static, uids, local_subnets())
    spec_hash = hashlib.sha256(json.dumps(commands, sort_keys=True).encode()).hexdigest()
    state_path = box.paths.state_dir / STATE_FILE
    raw = read_or_none(state_path)
    state = msgspec.json.decode(raw, type=FirewallState) if raw else None
    listing = current_table(Nft())
    if listing is None:
        why = "table does not exist"
    elif state is None:
        why = "table was not made by clawvisor provision"
    elif state.spec != spec_hash:
        why = "workloads.toml or the machine's subnets changed"
    elif state.table != fingerprint(listing):
        why = "the table was changed by hand"
    else:
        return
    if missing_users:
        # The uids are only known once the users exist: build again when applying.
        def later() -> None:
            plan_now = Plan()
            plan_firewall(box, plan_now)
            for change in plan_now.changes:
                change.apply()

        plan.add("firewall", f"replace table {FAMILY} {TABLE} ({why})", later)
        return
    plan.add(
        "firewall",
        f"replace table {FAMILY} {TABLE} ({why})",
        partial(apply, commands, state_path, spec_hash),
    )
