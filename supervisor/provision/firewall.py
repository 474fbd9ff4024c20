"""The `inet clawvisor` nftables table: default-deny egress per workload uid.

Built as libnftables JSON and replaced in one transaction (the kernel applies all of it
or none). For each workload uid, in order:

    cut          its uid is in @cut (a trigger cut its network): drop
    inbound      its reply on a connection opened to a port `inbound` lists, from a
                 source it lists: accept
    drop_in      its reply on any other connection someone else opened (nothing
                 comes in unless opened): drop
    established  replies and related traffic of allowed connections: accept
    resolver     to a configured resolver, port 53: accept (drop_dns: drop, for a
                 workload without DNS: `internet = "none"` unless `dns = true`)
    host         to one of its host_services (address . port): accept
    proxy        `proxy`: to its own port of the egress proxy on 127.0.0.1: accept
    metadata     to a cloud metadata address: drop
    lan          to RFC 1918, link-local, CGNAT, loopback, ULA, or this machine's own
                 subnets (found with pyroute2): drop
    internet     `open`: accept; `allowlist`: its static and dynamic allow sets: accept
    default      drop

The proxy's own user has a chain too (proxy_chain.py; counters `clawvisor-proxy_<reason>`, a name no
workload's counter can have, as theirs never hold `-`): established, DNS to the
resolvers, then metadata and LAN dropped whatever a name resolved to (a rebinding answer
that got past Squid's own check goes nowhere), then out.

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
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

from executors.nft import (
    CUT_SET,
    FAMILY,
    REASONS,
    TABLE,
    Nft,
    NftError,
    set_name,
    slug,
)

from ..config import WorkloadSpec, resolves
from ..persist import read_or_none, write_atomic
from .box import Box, uid_of
from .live_table import current_table, fingerprint, live_elements
from .networks import LAN4, LAN6, Net, Static, collapse, local_subnets, resolvers, static_entries
from .nftexpr import DPORT, L4, daddr, match, nfproto, prefix, tbl
from .plan import Plan, ProvisionError
from .proxy import proxy_ports, proxy_workloads
from .proxy_chain import proxy_chain

STATE_FILE = "firewall.json"


def counter_name(workload: str, reason: str) -> str:
    """The named counter for one verdict of one workload."""
    return f"{slug(workload)}_{reason}"


def chain_name(workload: str) -> str:
    return f"wl_{slug(workload)}"


def build(
    box: Box,
    static: dict[str, Static],
    uids: dict[str, int],
    subnets: list[Net],
    proxy: tuple[int, dict[str, int]] | None = None,
) -> list[dict[str, Any]]:
    """`proxy`: the proxy's uid and each proxy workload's port, when there are any."""
    """The commands that create the whole table (without dynamic elements)."""
    extra = [ipaddress.ip_network(n, strict=False) for n in box.settings.provision.lan]
    lan = [ipaddress.ip_network(n) for n in (*LAN4, *LAN6)] + extra + subnets
    meta = [ipaddress.ip_address(a) for a in box.settings.provision.metadata]
    dns = [ipaddress.ip_address(a) for a in resolvers(box)]
    cmds: list[dict[str, Any]] = [
        {
            "add": {
                "set": tbl(
                    name="lan4",
                    type="ipv4_addr",
                    flags=["interval"],
                    elem=[prefix(n) for n in collapse(lan, 4)],
                )
            }
        },
        {
            "add": {
                "set": tbl(
                    name="lan6",
                    type="ipv6_addr",
                    flags=["interval"],
                    elem=[prefix(n) for n in collapse(lan, 6)],
                )
            }
        },
        {"add": {"set": tbl(name=CUT_SET, type="uid")}},
        {
            "add": {
                "chain": tbl(name="output", type="filter", hook="output", prio=0, policy="accept")
            }
        },
    ]
    for v in (4, 6):
        addrs = [str(a) for a in dns if a.version == v]
        cmds.append(
            {
                "add": {
                    "set": tbl(
                        name=f"dns{v}", type=f"ipv{v}_addr", **({"elem": addrs} if addrs else {})
                    )
                }
            }
        )
        maddrs = [str(a) for a in meta if a.version == v]
        cmds.append(
            {
                "add": {
                    "set": tbl(
                        name=f"meta{v}", type=f"ipv{v}_addr", **({"elem": maddrs} if maddrs else {})
                    )
                }
            }
        )
    ports = proxy[1] if proxy is not None else {}
    for name in sorted(box.workloads):
        cmds += _workload(
            name,
            box.workloads[name],
            static[name],
            uids[name],
            ports.get(name),
            box.settings.proxy.max_connections,
        )
    if proxy is not None:
        cmds += proxy_chain(proxy[0])
    return cmds


def _workload(
    name: str,
    spec: WorkloadSpec,
    st: Static,
    uid: int,
    proxy_port: int | None = None,
    proxy_max: int = 512,
) -> list[dict[str, Any]]:
    chain = chain_name(name)
    cmds: list[dict[str, Any]] = [{"add": {"chain": tbl(name=chain)}}]
    for reason in REASONS:
        cmds.append({"add": {"counter": tbl(name=counter_name(name, reason))}})
    for kind, typ in (
        ("allow4", "ipv4_addr"),
        ("allow6", "ipv6_addr"),
        ("allowp4", ["ipv4_addr", "inet_service"]),
        ("allowp6", ["ipv6_addr", "inet_service"]),
    ):
        cmds.append({"add": {"set": tbl(name=set_name(kind, name), type=typ, flags=["timeout"])}})
    for kind, typ, elems in (
        ("static4", "ipv4_addr", [prefix(n) for n in collapse(st.v4, 4)]),
        ("static6", "ipv6_addr", [prefix(n) for n in collapse(st.v6, 6)]),
        (
            "staticp4",
            ["ipv4_addr", "inet_service"],
            [{"concat": [prefix(n), p]} for n, p in st.p4],
        ),
        (
            "staticp6",
            ["ipv6_addr", "inet_service"],
            [{"concat": [prefix(n), p]} for n, p in st.p6],
        ),
    ):
        cmds.append(
            {
                "add": {
                    "set": tbl(
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
                "rule": tbl(
                    chain=chain,
                    expr=[*expr, {"counter": counter_name(name, reason)}, {verdict: None}],
                )
            }
        }

    cmds.append(
        rule(match({"meta": {"key": "skuid"}}, f"@{CUT_SET}"), reason="cut", verdict="drop")
    )
    # Nothing comes in: a packet the workload sends on a connection someone else opened
    # (the SYN-ACK of its listener, the answer of its UDP server) is in conntrack's reply
    # direction, and is dropped unless `inbound` opens that port to that source. Matching
    # in this output chain keeps it per uid (`meta skuid`), which the input hook cannot.
    reply = match({"ct": {"key": "direction"}}, "reply")
    for opening in spec.inbound:
        sport = match({"payload": {"protocol": "th", "field": "sport"}}, opening.port)
        nets = [ipaddress.ip_network(s, strict=False) for s in opening.sources]
        if not nets:
            cmds.append(rule(reply, L4, sport, reason="inbound", verdict="accept"))
            continue
        for v in (4, 6):
            mine = [prefix(n) for n in collapse(nets, v)]
            if mine:
                cmds.append(
                    rule(
                        nfproto(v),
                        reply,
                        L4,
                        sport,
                        match(daddr(v), {"set": mine}),
                        reason="inbound",
                        verdict="accept",
                    )
                )
    cmds.append(rule(reply, reason="drop_in", verdict="drop"))
    # A workload without DNS has its queries dropped by a rule of their own, so that the
    # attempt (a tunnel through the resolver) is counted and named, not lost among drops;
    # before `est`, so that a flow to a resolver opened before a reload stops too.
    dns_ok = resolves(spec)
    for v in (4, 6):
        cmds.append(
            rule(
                nfproto(v),
                L4,
                match(DPORT, 53),
                match(daddr(v), f"@dns{v}"),
                reason="resolver" if dns_ok else "drop_dns",
                verdict="accept" if dns_ok else "drop",
            )
        )
    cmds.append(
        rule(
            match({"ct": {"key": "state"}}, ["established", "related"], op="in"),
            reason="est",
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
                    nfproto(v),
                    L4,
                    match({"concat": [daddr(v), DPORT]}, {"set": services[v]}),
                    reason="host",
                    verdict="accept",
                )
            )
    if proxy_port is not None:
        # At most so many connections to the proxy at once: one workload holding them all
        # would starve the others of Squid's file descriptors.
        cmds.append(
            rule(
                nfproto(4),
                match({"meta": {"key": "l4proto"}}, "tcp"),
                match(daddr(4), "127.0.0.1"),
                match(DPORT, proxy_port),
                {"ct count": {"val": proxy_max, "inv": True}},
                reason="drop",
                verdict="drop",
            )
        )
        # Its own port of the proxy, and no other: the port is how the proxy knows whose
        # request it is.
        cmds.append(
            rule(
                nfproto(4),
                match({"meta": {"key": "l4proto"}}, "tcp"),
                match(daddr(4), "127.0.0.1"),
                match(DPORT, proxy_port),
                reason="proxy",
                verdict="accept",
            )
        )
    for v in (4, 6):
        cmds.append(
            rule(nfproto(v), match(daddr(v), f"@meta{v}"), reason="drop_meta", verdict="drop")
        )
        cmds.append(
            rule(nfproto(v), match(daddr(v), f"@lan{v}"), reason="drop_lan", verdict="drop")
        )
    if spec.internet == "open":
        cmds.append(rule(reason="accept", verdict="accept"))
    elif spec.internet == "allowlist":
        for v in (4, 6):
            for kind in (f"allow{v}", f"static{v}"):
                cmds.append(
                    rule(
                        nfproto(v),
                        match(daddr(v), "@" + set_name(kind, name)),
                        reason="accept",
                        verdict="accept",
                    )
                )
            for kind in (f"allowp{v}", f"staticp{v}"):
                cmds.append(
                    rule(
                        nfproto(v),
                        L4,
                        match({"concat": [daddr(v), DPORT]}, "@" + set_name(kind, name)),
                        reason="accept",
                        verdict="accept",
                    )
                )
    cmds.append(rule(reason="drop", verdict="drop"))
    cmds.append(
        {
            "add": {
                "rule": tbl(
                    chain="output",
                    expr=[match({"meta": {"key": "skuid"}}, uid), {"jump": {"target": chain}}],
                )
            }
        }
    )
    return cmds


class FirewallState(msgspec.Struct):
    """What the last apply produced, to tell a changed spec or a hand edit from no change."""

    spec: str
    table: str


def _sets_in(commands: list[dict[str, Any]]) -> set[str]:
    return {c["add"]["set"]["name"] for c in commands if "set" in c.get("add", {})}


def apply(commands: list[dict[str, Any]], state_path: Path, spec_hash: str) -> None:
    """Replace the table in one transaction, keeping live dynamic elements (of the sets
    the new table still has: a deprovisioned workload's allows go with its sets)."""
    nft = Nft()
    table = {"family": FAMILY, "name": TABLE}
    sets = _sets_in(commands)
    keep = [
        c for c in live_elements(current_table(nft) or []) if c["add"]["element"]["name"] in sets
    ]
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


def remove_table(state_path: Path) -> None:
    """Delete the table (no workload is left to confine) and its record."""
    nft = Nft()
    if current_table(nft) is not None:
        try:
            nft.run({"delete": {"table": {"family": FAMILY, "name": TABLE}}})
        except NftError as exc:
            raise ProvisionError(f"nftables refused to delete the table: {exc}") from None
    state_path.unlink(missing_ok=True)


def plan_firewall(box: Box, plan: Plan, *, defer: bool = True) -> None:
    """Plan replacing the table if the spec changed or the table drifted; with no
    workload left, plan deleting it. A workload whose user does not exist yet is
    planned again when applying (provision makes users first), once: a user still
    missing then (one deprovisioned by hand) gets no rules, as no process can run as it."""
    if not box.workloads:
        if current_table(Nft()) is not None:
            plan.add(
                "firewall",
                f"delete table {FAMILY} {TABLE} (no workload left)",
                partial(remove_table, box.paths.state_dir / STATE_FILE),
            )
        return
    uids: dict[str, int] = {}
    for name, spec in box.workloads.items():
        uid = uid_of(spec.user)
        if uid is None:
            uid = spec.uid if spec.uid is not None else -1
        uids[name] = uid
    missing_users = [n for n, u in uids.items() if u < 0]
    if missing_users and not defer:
        # Still no such user: nothing can run as it, so it gets no rules (and no uid -1
        # in a match, which nftables refuses).
        kept = {n: s for n, s in box.workloads.items() if n not in missing_users}
        box = replace(box, workloads=kept)
        uids = {n: u for n, u in uids.items() if n in kept}
        missing_users = []
    static = {
        n: (static_entries(s) if uids[n] >= 0 and s.internet != "proxy" else Static([], [], [], []))
        for n, s in box.workloads.items()
    }
    proxy = None
    if proxy_workloads(box):
        proxy_uid = uid_of(box.settings.proxy.user)
        if proxy_uid is not None:
            proxy = (proxy_uid, proxy_ports(box))
        elif defer:
            missing_users.append(box.settings.proxy.user)
    commands = build(box, static, uids, local_subnets(), proxy)
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
    if missing_users and defer:
        # The uids are only known once the users exist: build again when applying.
        def later() -> None:
            plan_now = Plan()
            plan_firewall(box, plan_now, defer=False)
            for change in plan_now.changes:
                change.apply()

        plan.add("firewall", f"replace table {FAMILY} {TABLE} ({why})", later)
        return
    plan.add(
        "firewall",
        f"replace table {FAMILY} {TABLE} ({why})",
        partial(apply, commands, state_path, spec_hash),
    )
