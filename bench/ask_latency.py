"""Ask latency: from a gateway sending an `ask` intent to the prompt reaching an agent.

A real daemon (journald auditing on) with one subscribed agent on control.sock. Each
round sends an ask with a fresh URL, times how long until the agent holds the pending
event, then has the agent deny it. Beside it, in the same run and on the same daemon,
the floor: the allow round trip of `status`. The difference is what asking costs:
the broker, the audit records, and recording the pending request durably (fsync) so a
crash can never leave it unaccounted.

    .venv/bin/python -m bench.ask_latency [--rounds 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from bench.common import machine, write_result
from tests.helpers import rig

POLICY = """
[[rule]]
action = "status"
source = "bench"
target = "*"
decision = "allow"

[[rule]]
action = "open-url"
source = "bench"
target = "*"
decision = "ask"
timeout = 30
"""


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    root = rig.shared_tmpdir("clawvisor-bench-ask-")
    daemon = None
    ask_ms: list[float] = []
    allow_ms: list[float] = []
    try:
        with rig.journald():
            rig.write_config(root, workloads={"bench": "root"}, policy={"10.toml": POLICY})
            daemon = rig.start_daemon(root)
            agent = rig.connect_as(daemon.control, None)
            agent.sendall(b'{"id":"s","op":"subscribe","agent":"cli"}\n')
            rig.read_lines(agent, 1)
            gateway = rig.connect_as(daemon.intents, None)
            for i in range(args.rounds):
                t0 = time.perf_counter()
                gateway.sendall(rig.request_line(f"s{i}", {"action": "status"}))
                rig.read_lines(gateway, 1)
                allow_ms.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                gateway.sendall(
                    rig.request_line(
                        f"a{i}", {"action": "open-url", "url": f"https://bench.example/{i}"}
                    )
                )
                [event] = rig.read_lines(agent, 1)
                ask_ms.append(time.perf_counter() - t0)
                p = event["request"]
                agent.sendall(
                    json.dumps(
                        {
                            "id": f"v{i}",
                            "op": "verdict",
                            "request": p["id"],
                            "digest": p["digest"],
                            "allow": False,
                        }
                    ).encode()
                    + b"\n"
                )
                rig.read_lines(agent, 2)  # the verdict's reply and the withdrawal
                rig.read_lines(gateway, 1)
            agent.close()
            gateway.close()
    finally:
        if daemon is not None:
            daemon.stop()
        rig.cleanup_root(root)
    rows = {
        "ask_to_prompt_p50_ms": pct(ask_ms, 0.5),
        "ask_to_prompt_p99_ms": pct(ask_ms, 0.99),
        "allow_round_trip_p50_ms": pct(allow_ms, 0.5),
        "allow_round_trip_p99_ms": pct(allow_ms, 0.99),
        "rounds": args.rounds,
    }
    table = "\n".join(
        [
            "| figure | ask: intent to prompt at agent | floor: allow round trip | ratio |",
            "| --- | --- | --- | --- |",
            f"| p50 ms | {rows['ask_to_prompt_p50_ms']:.2f} | {rows['allow_round_trip_p50_ms']:.2f}"
            f" | {rows['ask_to_prompt_p50_ms'] / rows['allow_round_trip_p50_ms']:.1f}x |",
            f"| p99 ms | {rows['ask_to_prompt_p99_ms']:.2f} | {rows['allow_round_trip_p99_ms']:.2f}"
            f" | {rows['ask_to_prompt_p99_ms'] / rows['allow_round_trip_p99_ms']:.1f}x |",
        ]
    )
    write_result(
        "ask_latency",
        {
            "machine": machine(),
            **rows,
            "table": table,
            "median_ask_ms": statistics.median(ask_ms) * 1e3,
        },
    )
    print(f"machine: {machine()}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
