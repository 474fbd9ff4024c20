"""Which 127.0.0.1 port of the proxy is whose: assigned once, kept across provisions (a
workload added later never moves another's port)."""

from __future__ import annotations


def assign(kept: dict[str, int], names: list[str], base: int) -> dict[str, int]:
    """Keep every listed workload's port; give each new one the lowest free port >= base."""
    out = {n: p for n, p in kept.items() if n in names and p >= base}
    used = set(out.values())
    for name in sorted(names):
        if name in out:
            continue
        port = base
        while port in used:
            port += 1
        out[name] = port
        used.add(port)
    return out
