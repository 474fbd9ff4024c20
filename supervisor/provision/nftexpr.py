"""The libnftables JSON expressions the firewall's rules are made of (in table `inet
clawvisor`): small builders shared by the workloads' chains and the proxy's."""

from __future__ import annotations

from typing import Any

from executors.nft import FAMILY, TABLE

from .networks import Net


def tbl(**kw: Any) -> dict[str, Any]:
    return {"family": FAMILY, "table": TABLE, **kw}


def match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def daddr(v: int) -> dict[str, Any]:
    return {"payload": {"protocol": "ip" if v == 4 else "ip6", "field": "daddr"}}


L4 = match({"meta": {"key": "l4proto"}}, {"set": ["tcp", "udp"]})
DPORT = {"payload": {"protocol": "th", "field": "dport"}}


def nfproto(v: int) -> dict[str, Any]:
    return match({"meta": {"key": "nfproto"}}, "ipv4" if v == 4 else "ipv6")


def prefix(net: Net) -> Any:
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}
