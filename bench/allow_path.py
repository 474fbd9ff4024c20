"""Where an allowed `status` spends the daemon's CPU: each step of the pipeline, in process.

The round trip (bench/roundtrip.py) says how long a decision takes over the socket; this
says what each step of it costs, measured on the pipeline itself (no sockets, no event
loop): decoding the line, deciding, the executor, building the audit record, hashing it,
sending it to journald, and encoding the reply; then the whole of a gateway session's
handling, with the journal send counted and without. The rest of a round trip's CPU is
the event loop and the socket system calls. Writes bench/results/allow_path.json.

    .venv/bin/python -m bench.allow_path [--calls 50000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import machine, write_result
from executors import ACTIONS
from policy import evaluate
from supervisor.audit.journal import JournalSender
from supervisor.audit.record import record_bytes, seal
from supervisor.rejections import Rejections
from supervisor.session import GatewaySession
from supervisor.wire.common import encode_reply
from supervisor.wire.intents import decode_request, intent_params
from tests.helpers import rig
from tests.helpers.inprocess import Env
from tests.helpers.rules import rule

LINE = b'{"id":"1","intent":{"action":"status"}}'


class NullSender:
    """A journal that takes every record at no cost (what the daemon's CPU is without it)."""

    def send(self, payload: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def per_call(f: Callable[[], object], calls: int) -> float:
    """Median over 5 runs of µs per call."""
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            f()
        runs.append((time.perf_counter() - t0) / calls * 1e6)
    return sorted(runs)[2]


def spaced_send(payload: bytes, count: int) -> float:
    """µs per journald send when journald keeps up (one record every 200 µs, as a single
    gateway's round trips would send them), median."""
    sender = JournalSender()
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        sender.send(payload)
        times.append(time.perf_counter() - t0)
        time.sleep(0.0002)
    sender.close()
    return sorted(times)[len(times) // 2] * 1e6


def run(calls: int) -> dict[str, Any]:
    """Every step's cost, in one run."""
    with rig.journald(), tempfile.TemporaryDirectory() as tmp:
        env = Env(Path(tmp), rule("status", "w"))
        env.trail._sender = NullSender()
        session = GatewaySession(env.caller, env.pipeline, Rejections(env.trail))
        request = decode_request(LINE)
        assert not isinstance(request, type(None))
        status = ACTIONS["status"]
        ctx = env.pipeline.context(status)
        for _ in range(2000):  # warm caches
            session.handle(LINE)
        outcome = env.pipeline.submit(env.caller, request)  # type: ignore[arg-type]
        steps: dict[str, float] = {}
        steps["decode the line"] = per_call(lambda: decode_request(LINE), calls)
        steps["params and their audit JSON"] = per_call(
            lambda: intent_params(request.intent),  # type: ignore[union-attr]
            calls,
        )
        steps["decide (policy evaluate)"] = per_call(
            lambda: evaluate(env.state.policy, "w", "status", None, {}), calls
        )
        steps["executor context"] = per_call(lambda: env.pipeline.context(status), calls)
        assert status.run_inline is not None
        run_inline = status.run_inline
        steps["executor (status, in process)"] = per_call(
            lambda: run_inline(status.params(), ctx), calls
        )
        last = env.trail._recent[-1]
        cache: dict[Any, bytes] = {}
        steps["audit record bytes"] = per_call(lambda: record_bytes(last, cache), calls)
        body = record_bytes(last, cache)
        steps["audit record hash (sha256)"] = per_call(lambda: seal(body), calls)
        steps["reply encode"] = per_call(lambda: encode_reply(outcome.reply()), calls)  # type: ignore[union-attr]
        whole = per_call(lambda: session.handle(LINE), calls)
        _, payload = seal(body)
        send = spaced_send(payload, min(calls, 5000))
    parts = sum(steps.values())
    return {
        "machine": machine(),
        "calls": calls,
        "steps_us": steps,
        "journald_send_us": send,
        "session_handle_us": whole,
        "session_handle_with_send_us": whole + send,
        "other_us": whole - parts,
        "table": table(steps, whole, send),
    }


def table(steps: dict[str, float], whole: float, send: float) -> str:
    out = ["| step | µs per allowed status |", "| --- | --- |"]
    out += [f"| {name} | {us:.2f} |" for name, us in steps.items()]
    out.append(f"| the rest of the session's handling | {whole - sum(steps.values()):.2f} |")
    out.append(f"| **gateway session, per request (no journal)** | **{whole:.2f}** |")
    out.append(f"| journald send (one datagram, journald keeping up) | {send:.2f} |")
    out.append(f"| **daemon CPU in the pipeline, per request** | **{whole + send:.2f}** |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50000)
    args = parser.parse_args()
    result = run(args.calls)
    write_result("allow_path", result)
    print(result["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
