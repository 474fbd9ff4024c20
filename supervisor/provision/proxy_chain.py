"""The egress proxy's own chain in table `inet clawvisor`: what Squid, as its user, may
reach. Established traffic and DNS to the resolvers, then metadata, LAN and loopback are
dropped whatever a name resolved to (a rebinding answer that got past Squid's check goes
nowhere), then out. Its counters are `clawvisor-proxy_<reason>`: no workload's counter
can have that name, as theirs never hold `-`."""

from __future__ import annotations

from typing import Any

from .nftexpr import DPORT, L4, daddr, match, nfproto, tbl

PROXY_CHAIN = "proxy_out"
PROXY_COUNTERS = "clawvisor-proxy"
PROXY_REASONS = ("est", "resolver", "drop_meta", "drop_lan", "accept")


def proxy_chain(uid: int) -> list[dict[str, Any]]:
    cmds: list[dict[str, Any]] = [{"add": {"chain": tbl(name=PROXY_CHAIN)}}]
    for reason in PROXY_REASONS:
        cmds.append({"add": {"counter": tbl(name=f"{PROXY_COUNTERS}_{reason}")}})

    def rule(*expr: dict[str, Any], reason: str, verdict: str) -> dict[str, Any]:
        counted = [*expr, {"counter": f"{PROXY_COUNTERS}_{reason}"}, {verdict: None}]
        return {"add": {"rule": tbl(chain=PROXY_CHAIN, expr=counted)}}

    state = match({"ct": {"key": "state"}}, ["established", "related"], op="in")
    cmds.append(rule(state, reason="est", verdict="accept"))
    for v in (4, 6):
        dns = [nfproto(v), L4, match(DPORT, 53), match(daddr(v), f"@dns{v}")]
        cmds.append(rule(*dns, reason="resolver", verdict="accept"))
    for v in (4, 6):
        meta = match(daddr(v), f"@meta{v}")
        cmds.append(rule(nfproto(v), meta, reason="drop_meta", verdict="drop"))
        lan = match(daddr(v), f"@lan{v}")
        cmds.append(rule(nfproto(v), lan, reason="drop_lan", verdict="drop"))
    cmds.append(rule(reason="accept", verdict="accept"))
    jump = [match({"meta": {"key": "skuid"}}, uid), {"jump": {"target": PROXY_CHAIN}}]
    cmds.append({"add": {"rule": tbl(chain="output", expr=jump)}})
    return cmds
