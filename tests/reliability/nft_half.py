"""Run inside a fresh network namespace: apply clawvisor's table, then a replacement whose
last command fails, and print both listings (they must be the same) as JSON."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from executors.nft import FAMILY, TABLE, Nft
from supervisor.provision.firewall import apply
from supervisor.provision.plan import ProvisionError

T = {"family": FAMILY, "table": TABLE}


def commands(chains: int) -> list[dict]:
    out: list[dict] = [
        {"add": {"set": {**T, "name": "allow4", "type": "ipv4_addr", "flags": ["interval"]}}},
    ]
    for i in range(chains):
        out.append({"add": {"chain": {**T, "name": f"w{i}"}}})
        out.append({"add": {"rule": {**T, "chain": f"w{i}", "expr": [{"counter": None}]}}})
    return out


def listing(nft: Nft) -> list[dict]:
    out = nft.run({"list": {"ruleset": None}}) or {"nftables": []}
    return [x for x in out["nftables"] if "metainfo" not in x]


def main() -> int:
    nft = Nft()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "firewall.json"
        apply(commands(3), state, "first")
        before = listing(nft)
        bad = [
            *commands(5),
            {
                "add": {
                    "rule": {**T, "chain": "w4", "expr": [{"jump": {"target": "no-such-chain"}}]}
                }
            },
        ]
        try:
            apply(bad, state, "second")
            refused = False
        except ProvisionError:
            refused = True
        after = listing(nft)
    rules = sum("rule" in x for x in before)
    json.dump(
        {"refused": refused, "before": before, "after": after, "rules": rules, "batch": len(bad)},
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
