"""Allow-path round trip: clawvisor beside a bare asyncio JSON-lines echo server (the floor).

Both servers are driven by the same client code in the same run, in alternating rounds
(the figure is the median over rounds): 1 client doing sequential round trips, then N
concurrent clients, each connection keeping one request in flight. The daemon is a real
process with journald auditing on (a journald is started if none runs). CPU time per
request of each process (server, journald) is measured too, which is what explains the
ratios when clients are many and cores are few. Writes bench/results/roundtrip.json.

    .venv/bin/python -m bench.roundtrip [--requests 5000] [--clients 1 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import cpu_seconds, machine, median_of, write_result
from tests.helpers import rig

HERE = Path(__file__).resolve().parent
POLICY = '[[rule]]\naction = "status"\nsource = "bench"\ntarget = "*"\ndecision = "allow"\n'
# Every bench client is one uid, so the per-uid connection cap (16) is lifted.
SETTINGS = '[server]\nsocket_group = "cvt-no-such-group"\nmax_connections_per_uid = 256\n'
REQUEST = b'{"id":"%d","intent":{"action":"status"}}\n'


async def one_client(path: str, count: int, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_unix_connection(path)
    for i in range(count):
        t0 = time.perf_counter()
        writer.write(REQUEST % i)
        line = await reader.readline()
        latencies.append(time.perf_counter() - t0)
        if not line:
            raise RuntimeError("server closed the connection")
    writer.close()


async def drive(path: str, clients: int, total: int) -> dict[str, float]:
    per = max(1, total // clients)
    latencies: list[float] = []
    await one_client(path, 200, [])  # warm-up
    t0 = time.perf_counter()
    await asyncio.gather(*(one_client(path, per, latencies) for _ in range(clients)))
    wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "p50_us": statistics.median(latencies) * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99) - 1] * 1e6,
        "throughput_rps": len(latencies) / wall,
        "requests": float(len(latencies)),
    }


def measure(path: str, clients: int, total: int, pids: dict[str, int]) -> dict[str, float]:
    """One measured run; adds CPU µs per request for each process in `pids`."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    figures = asyncio.run(drive(path, clients, total))
    n = figures["requests"] + 200
    for name, pid in pids.items():
        figures[f"{name}_cpu_us_per_req"] = (cpu_seconds(pid) - before[name]) / n * 1e6
    return figures


def table(rows: list[dict[str, object]]) -> str:
    out = [
        "| clients | figure | clawvisor | echo floor | ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        c, f, n = row["clawvisor"], row["floor"], row["clients"]
        assert isinstance(c, dict) and isinstance(f, dict)
        for key, label, fmt in (
            ("p50_us", "p50 µs", ".0f"),
            ("p99_us", "p99 µs", ".0f"),
            ("throughput_rps", "req/s", ".0f"),
            ("server_cpu_us_per_req", "server CPU µs/req", ".1f"),
        ):
            out.append(
                f"| {n} | {label} | {c[key]:{fmt}} | {f[key]:{fmt}} | {c[key] / f[key]:.2f}x |"
            )
        out.append(
            f"| {n} | journald CPU µs/req | {c['journald_cpu_us_per_req']:.1f} | 0 (no audit) | - |"
        )
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = rig.shared_tmpdir("clawvisor-bench-")
    floor_path = str(root / "echo.sock")
    floor = subprocess.Popen(
        [sys.executable, str(HERE / "echo_floor.py"), floor_path], stdout=subprocess.PIPE, text=True
    )
    assert floor.stdout is not None and floor.stdout.readline().strip() == "ready"
    daemon = None
    try:
        with rig.journald() as journal:
            rig.write_config(
                root, workloads={"bench": "root"}, policy={"10.toml": POLICY}, settings=SETTINGS
            )
            daemon = rig.start_daemon(root)
            jpid = journal.proc.pid if journal.proc is not None else None
            rows: list[dict[str, object]] = []
            for clients in args.clients:
                fr: list[dict[str, float]] = []
                cr: list[dict[str, float]] = []
                for _ in range(args.rounds):
                    fr.append(measure(floor_path, clients, args.requests, {"server": floor.pid}))
                    pids = {"server": daemon.proc.pid}
                    if jpid is not None:
                        pids["journald"] = jpid
                    cr.append(measure(str(daemon.intents), clients, args.requests, pids))
                c = median_of(cr)
                c.setdefault("journald_cpu_us_per_req", float("nan"))
                rows.append({"clients": clients, "floor": median_of(fr), "clawvisor": c})
            fallback = len(daemon.fallback_records())
    finally:
        floor.terminate()
        floor.wait()
        if daemon is not None:
            daemon.stop()
        rig.cleanup_root(root)
    unix_qlen = Path("/proc/sys/net/unix/max_dgram_qlen").read_text().strip()
    result = {
        "machine": machine(),
        "rounds": args.rounds,
        "requests": args.requests,
        "net.unix.max_dgram_qlen": unix_qlen,
        "audit_fallback_records": fallback,
        "rows": rows,
        "table": table(rows),
    }
    write_result("roundtrip", result)
    print(f"machine: {result['machine']}; net.unix.max_dgram_qlen={unix_qlen}")
    print(result["table"])
    print(f"audit: every request audited to journald; {fallback} records in the fallback")
    return 0


if __name__ == "__main__":
    sys.exit(main())
