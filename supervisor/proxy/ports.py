"""Which 127.0.0.1 port of the proxy is whose: assigned once, kept across provisions (a
workload added later never moves another's port).

The ports are below 1024, which only a holder of CAP_NET_BIND_SERVICE may bind (Squid
has it; no workload does; provisioning keeps net.ipv4.ip_unprivileged_port_start at
1024). A port of 1024 or more was open to every workload: while Squid reconfigured
(about 70 ms per `egress-allow`) its ports were closed, and another workload could bind
one first and be sent that workload's requests.
"""

from __future__ import annotations

#: The first port an unprivileged process may bind (the kernel's default).
UNPRIVILEGED = 1024


def assign(kept: dict[str, int], names: list[str], base: int) -> dict[str, int]:
    """Keep every listed workload's port in [base, 1024); give each new one the lowest
    free port >= base. ValueError when the privileged ports run out."""
    if base >= UNPRIVILEGED:
        raise ValueError(
            f"[proxy] base_port {base} is not below {UNPRIVILEGED}: any workload could bind "
            "another's proxy port while Squid reconfigures"
        )
    out = {n: p for n, p in kept.items() if n in names and base <= p < UNPRIVILEGED}
    used = set(out.values())
    for name in sorted(names):
        if name in out:
            continue
        port = base
        while port in used:
            port += 1
        if port >= UNPRIVILEGED:
            raise ValueError(
                f"no proxy port below {UNPRIVILEGED} is left from [proxy] base_port {base} "
                f"for {len(names)} proxy workloads: lower base_port"
            )
        out[name] = port
        used.add(port)
    return out
