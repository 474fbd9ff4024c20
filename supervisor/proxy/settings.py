"""`[proxy]` in clawvisor.toml: the egress proxy's user, binary, directory and ports."""

from __future__ import annotations

from typing import Annotated

import msgspec


class ProxySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The egress proxy (Squid) that `internet = "proxy"` workloads go out through."""

    #: The unprivileged user it runs as (made by `clawvisor provision`).
    user: Annotated[str, msgspec.Meta(pattern=r"^[a-z_][a-z0-9_-]{0,30}$")] = "clawvisor-proxy"
    squid: str = "/usr/sbin/squid"
    #: Its configuration and lists (root's); its log and pid file in `var/` (its own).
    dir: str = "/var/lib/clawvisor-proxy"
    #: Each proxy workload's own port on 127.0.0.1, from here up (only its uid may reach it;
    #: below 1024, so that only Squid may bind it: see proxy/ports.py).
    base_port: Annotated[int, msgspec.Meta(ge=1, le=65000)] = 810
    #: Ports an `egress_allow` name without one may be reached on.
    default_ports: list[Annotated[int, msgspec.Meta(ge=1, le=65535)]] = msgspec.field(
        default_factory=lambda: [443]
    )
    #: Connections one workload may hold open to the proxy at once (nftables `ct count`).
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=60000)] = 512
