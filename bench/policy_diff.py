"""`policy diff` on two 1,000-rule policies: how long the proof takes.

A seeded generator writes a 1,000-rule policy (20 workloads; open-url rules with a URL
glob each, egress-allow rules with a host domain and a port range, status rules) and a
second one with 5% of its rules edited: decisions flipped, globs widened to a domain,
ranges moved, rules removed and added. The figure is the median wall time of
`diff_policies` over `--repeat` runs (both policies compiled once, outside the timing),
with what it found.

    .venv/bin/python -m bench.policy_diff [--rules 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from typing import Any

from bench.common import machine, write_result
from policy import load_policy_texts
from policy.diff import diff_policies
from supervisor.actions import POLICY_CATALOG

WORKLOADS = [f"w{i}" for i in range(20)]
AIM_S = 1.0


def generate(n: int, rng: random.Random) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for i in range(n):
        kind = rng.random()
        rule: dict[str, Any] = {
            "source": rng.choice(WORKLOADS),
            "target": rng.choice([*WORKLOADS, "@self", "*"]),
            "decision": rng.choice(["allow", "allow", "ask", "deny"]),
        }
        if kind < 0.6:
            rule["action"] = "open-url"
            rule["params"] = f'url = {{ glob = "https://h{i}.example/*" }}'
        elif kind < 0.9:
            rule["action"] = "egress-allow"
            rule["params"] = (
                f'host = {{ domain = "*.h{i}.example" }}\nparams.port = {{ range = [1, 1024] }}'
            )
        else:
            rule["action"] = "status"
            rule["target"] = "*"
            rule["params"] = None
        rules.append(rule)
    return rules


def edit(rules: list[dict[str, Any]], rng: random.Random, share: float) -> list[dict[str, Any]]:
    out = [dict(r) for r in rules]
    for i in rng.sample(range(len(out)), int(len(out) * share)):
        r = out[i]
        what = rng.randrange(4)
        if what == 0:
            r["decision"] = {"allow": "ask", "ask": "allow", "deny": "allow"}[r["decision"]]
        elif what == 1 and r["action"] == "open-url":
            r["params"] = f'url = {{ domain = "*.h{i}.example" }}'
        elif what == 1 and r["action"] == "egress-allow":
            r["params"] = f'host = {{ domain = "*.h{i}.example" }}\nparams.port = 443'
        elif what == 2:
            r["action"] = "removed"
        else:
            out.append(
                {
                    "action": "open-url",
                    "source": r["source"],
                    "target": "*",
                    "decision": "allow",
                    "params": f'url = {{ prefix = "https://h{i}.example/new/" }}',
                }
            )
    return [r for r in out if r["action"] != "removed"]


def text(rules: list[dict[str, Any]]) -> str:
    out = []
    for r in rules:
        if r["target"] == "@self" and r["action"] == "status":
            r = {**r, "target": "*"}
        out.append(
            f'[[rule]]\naction = "{r["action"]}"\nsource = "{r["source"]}"\n'
            f'target = "{r["target"]}"\ndecision = "{r["decision"]}"\n'
            + (f"params.{r['params']}\n" if r["params"] else "")
        )
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(18)
    base = generate(args.rules, rng)
    changed = edit(base, rng, 0.05)
    workloads = {w: frozenset() for w in WORKLOADS}
    old = load_policy_texts([("old.toml", text(base))], POLICY_CATALOG, workloads)
    new = load_policy_texts([("new.toml", text(changed))], POLICY_CATALOG, workloads)
    samples = []
    result = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = diff_policies(old, new, POLICY_CATALOG)
        samples.append(time.perf_counter() - t0)
    assert result is not None
    witnesses = sum(len(c.changes) for c in result.cells)
    row = {
        "old_rules": len(old.rules),
        "new_rules": len(new.rules),
        "cells": result.total_cells,
        "changed_cells": len(result.cells),
        "witnesses": witnesses,
        "proofs_none_wider": sum(c.none_wider for c in result.cells),
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "aim_s": AIM_S,
        "meets_aim": statistics.median(samples) < AIM_S,
    }
    table = "\n".join(
        [
            "| rules (old / new) | cells | changed cells | witnesses | median s | aim |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| {row['old_rules']} / {row['new_rules']} | {row['cells']} | "
            f"{row['changed_cells']} | {witnesses} | {row['median_s']:.3f} | < {AIM_S:g} s "
            f"{'met' if row['meets_aim'] else 'MISSED'} |",
        ]
    )
    write_result("policy_diff", {"machine": machine(), "row": row, "table": table})
    print(f"machine: {machine()}")
    print(table)
    return 0 if row["meets_aim"] else 1


if __name__ == "__main__":
    sys.exit(main())
