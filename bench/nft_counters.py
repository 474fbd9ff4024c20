"""Reading every counter of 100 workloads: libnftables' JSON API in-process (what the
counters monitor does each interval) beside `nft -j list counters` as a subprocess (what
a script would do), in a network namespace made for the bench with a table shaped like
the provisioned one (per workload: accept, drop, drop_lan, drop_meta, cut, dns, host and
established counters, each used by a rule). Both results are parsed to Python objects.

    .venv/bin/python -m bench.nft_counters [--workloads 100] [--reads 200]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import time

from bench.common import machine, write_result

REASONS = ("accept", "drop", "drop_lan", "drop_meta", "cut", "dns", "host", "established")


def ruleset(workloads: int) -> str:
    lines = ["table inet clawvisor {"]
    for w in range(workloads):
        for r in REASONS:
            lines.append(f"  counter w{w:03d}_{r} {{ }}")
    lines.append("  chain output { type filter hook output priority 0; policy accept;")
    for w in range(workloads):
        uid = 20000 + w
        for r in REASONS:
            verdict = "accept" if r in ("accept", "dns", "host", "established") else "drop"
            mark = REASONS.index(r) + 1
            lines.append(
                f'    meta skuid {uid} meta mark {mark} counter name "w{w:03d}_{r}" {verdict}'
            )
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def inner(reads: int) -> dict[str, float]:
    """Runs inside the namespace: both ways of reading, interleaved, timed."""
    from executors.nft import Nft

    nft = Nft()
    cmd = {"list": {"counters": {"family": "inet", "table": "clawvisor"}}}
    api: list[float] = []
    proc: list[float] = []
    counters = 0
    for _ in range(reads):
        t0 = time.perf_counter()
        out = nft.run(cmd)
        api.append(time.perf_counter() - t0)
        counters = sum(1 for item in out["nftables"] if "counter" in item)
        t0 = time.perf_counter()
        raw = subprocess.run(
            ["nft", "-j", "list", "counters", "table", "inet", "clawvisor"],
            capture_output=True,
            check=True,
        ).stdout
        json.loads(raw)
        proc.append(time.perf_counter() - t0)
    return {
        "counters": counters,
        "api_ms": statistics.median(api) * 1e3,
        "api_p99_ms": sorted(api)[int(len(api) * 0.99) - 1] * 1e3,
        "subprocess_ms": statistics.median(proc) * 1e3,
        "subprocess_p99_ms": sorted(proc)[int(len(proc) * 0.99) - 1] * 1e3,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=100)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(inner(args.reads)))
        return 0
    ns = f"cvtbenchnft{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        enter = ["nsenter", f"--net=/run/netns/{ns}", "--"]
        subprocess.run(
            [*enter, "nft", "-f", "-"], input=ruleset(args.workloads), text=True, check=True
        )
        out = subprocess.run(
            [
                *enter,
                sys.executable,
                "-m",
                "bench.nft_counters",
                "--inner",
                "--reads",
                str(args.reads),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
    figures = json.loads(out)
    result = {"machine": machine(), "workloads": args.workloads, "reads": args.reads, **figures}
    write_result("nft_counters", result)
    print(
        f"{figures['counters']} counters of {args.workloads} workloads: JSON API "
        f"{figures['api_ms']:.2f} ms, nft -j subprocess {figures['subprocess_ms']:.2f} ms "
        f"({figures['subprocess_ms'] / figures['api_ms']:.1f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
