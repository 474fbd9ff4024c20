"""What clawvisor adds to one OpenClaw turn, beside the turn itself.

A real OpenClaw (the pinned build of `make openclaw`) with clawvisor's plugin, as a
workload user, against a real `clawvisor serve`, its model a scripted server on
127.0.0.1. Two turn shapes, interleaved, --turns of each, every turn one
`openclaw agent exec`:

- a turn whose one tool call is `clawvisor_notify` (an intent allowed by policy, and
  the plugin's per-turn capabilities read that built the tool list);
- the same turn calling OpenClaw's own `tool_search` instead (no clawvisor on the path).

The tool step is the time from the model's tool call having been sent to the request
that carries its result (measured at the model server: OpenClaw's dispatch, the tool and
the plugin's intent round trip). Beside them, the plugin's capabilities read alone (the
child process it runs each turn), timed --reads times as the workload user.

Writes bench/results/openclaw_turn.json.

    .venv/bin/python -m bench.openclaw_turn [--turns 5] [--reads 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import machine, write_result
from tests.helpers import rig
from tests.helpers.model_server import say, tool_call
from tests.helpers.openclaw import (
    NODE_BIN,
    PLUGIN_DIR,
    Gateway,
    daemon_settings,
    gateway,
    installed,
)
from tests.helpers.rules import rule

POLICY = rule("capabilities", "oc") + rule("notify", "oc")


def one_turn(g: Gateway, name: str, call: dict[str, Any]) -> dict[str, float]:
    g.model.scenarios[name] = [call, say("done")]
    started = time.monotonic()
    out = g.turn(name)
    total = time.monotonic() - started
    if out.get("final") != "done":
        raise RuntimeError(f"turn {name} did not end as scripted: {out}")
    first, second = g.model.requests(name)[:2]
    return {"turn_s": total, "tool_ms": (second.at - first.done) * 1000}


def capabilities_reads(g: Gateway, reads: int) -> list[float]:
    """The plugin's per-turn read of the tool list, alone, as the workload user (ms)."""
    argv = [
        "/usr/bin/setpriv", f"--reuid={g.user.uid}", f"--regid={g.user.gid}", "--clear-groups",
        str(NODE_BIN / "node"), str(PLUGIN_DIR / "capabilities.js"), str(g.daemon.intents),
    ]  # fmt: skip
    times = []
    for _ in range(reads):
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        times.append((time.monotonic() - started) * 1000)
        if '"status":"ok"' not in done.stdout:
            raise RuntimeError(f"capabilities read failed: {done.stdout} {done.stderr}")
    return times


def med(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--turns", type=int, default=5)
    ap.add_argument("--reads", type=int, default=20)
    args = ap.parse_args()
    if not installed():
        print("the pinned OpenClaw is not installed: run `make openclaw`", file=sys.stderr)
        return 2
    root = rig.shared_tmpdir("clawvisor-bench-oc-")
    homes = root / "homes"
    homes.mkdir()
    user = rig.create_user()
    daemon = None
    try:
        rig.write_config(
            root,
            workloads={"oc": user},
            policy={"10.toml": POLICY},
            settings=daemon_settings(homes),
        )
        daemon = rig.start_daemon(root)
        with gateway("plugin", user, daemon, homes) as g:
            one_turn(g, "warm", tool_call("tool_search", query="warm up"))
            ours, theirs = [], []
            for i in range(args.turns):
                call = tool_call("clawvisor_notify", message=f"turn {i}")
                ours.append(one_turn(g, f"cv-{i}", call))
                theirs.append(one_turn(g, f"own-{i}", tool_call("tool_search", query="notify")))
            reads = capabilities_reads(g, args.reads)
    finally:
        if daemon is not None:
            daemon.stop()
        rig.delete_user(user)
        rig.cleanup_root(root)
    result = {
        "machine": machine(),
        "turns": args.turns,
        "clawvisor": {"turn_s": med(ours, "turn_s"), "tool_ms": med(ours, "tool_ms")},
        "openclaw_own": {"turn_s": med(theirs, "turn_s"), "tool_ms": med(theirs, "tool_ms")},
        "capabilities_ms": statistics.median(reads),
        "samples": {"clawvisor": ours, "openclaw_own": theirs, "capabilities_ms": reads},
    }
    path: Path = write_result("openclaw_turn", result)
    c, o = result["clawvisor"], result["openclaw_own"]
    print(
        f"turn {c['turn_s']:.2f} s (own tool {o['turn_s']:.2f} s); tool step "
        f"{c['tool_ms']:.0f} ms (own tool {o['tool_ms']:.0f} ms); capabilities read "
        f"{result['capabilities_ms']:.0f} ms -> {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
