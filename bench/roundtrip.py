"""Decision round trip (allow path, trivial executor): clawvisor beside its peers and floor.

Same machine, same run:
- clawvisor: `status` (allowed, run inline), journald auditing on (a journald is started
  if none runs), as a real daemon process;
- the floor: a bare asyncio JSON-lines echo server (no checks at all);
- polkit: CheckAuthorization over D-Bus on an action every subject may do, polkitd on a
  private system bus (bench/peers.py), and `pkcheck` for the same action;
- sudo: `sudo -n /bin/true` for a user a sudoers drop-in allows exactly that.

One client: sequential round trips with a blocking client (the least client overhead
each peer can have: a plain socket; jeepney's blocking connection; a process spawn);
beside `status` (allowed, a result payload) a denied `open-url` (decided and audited, no
executor, no result), and with `--before DIR` the same `status` served by another
checkout's code (PYTHONPATH=DIR, e.g. a `git worktree` of an older commit), so a
change's effect on the allow path is measured in the same run.
8 and 64 clients: asyncio clients, each connection keeping one request in flight, for
clawvisor, the floor and polkit over D-Bus. clawvisor and the floor alternate rounds
(medians). CPU time per request of the server and journald is measured too: it explains
the ratios when clients are many and cores few. Writes bench/results/roundtrip.json
(with latency samples for the plots).

    .venv/bin/python -m bench.roundtrip [--requests 5000] [--clients 1 8 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import peers
from bench.common import cpu_seconds, machine, median_of, write_result
from tests.helpers import rig

HERE = Path(__file__).resolve().parent
POLICY = '[[rule]]\naction = "status"\nsource = "bench"\ntarget = "*"\ndecision = "allow"\n'
# Every bench client is one uid, so the per-uid connection cap (16) is lifted.
SETTINGS = '[server]\nsocket_group = "cvt-no-such-group"\nmax_connections_per_uid = 256\n'
REQUEST = b'{"id":"%d","intent":{"action":"status"}}\n'
DENIED = b'{"id":"%d","intent":{"action":"open-url","url":"https://example.org/"}}\n'
SAMPLES = 2000  # latency samples kept per series for the plots


def summary(latencies: list[float], wall: float | None = None) -> dict[str, float]:
    """p50/p99 in µs and throughput (requests over wall time, or 1/mean when sequential)."""
    ordered = sorted(latencies)
    n = len(ordered)
    return {
        "p50_us": statistics.median(ordered) * 1e6,
        "p99_us": ordered[max(0, int(n * 0.99) - 1)] * 1e6,
        "throughput_rps": n / (wall if wall is not None else sum(ordered)),
        "requests": float(n),
    }


def keep(latencies: list[float]) -> list[float]:
    """A fixed-size random sample (µs), for distribution plots."""
    rng = random.Random(0)
    picked = latencies if len(latencies) <= SAMPLES else rng.sample(latencies, SAMPLES)
    return [round(x * 1e6, 2) for x in picked]


# --- one client, blocking ---------------------------------------------------------------------


def lines_sequential(path: str, count: int, request: bytes = REQUEST) -> list[float]:
    """`count` request/reply round trips on one plain socket, each timed."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    out: list[float] = []
    try:
        for i in range(count + 200):
            t0 = time.perf_counter()
            sock.sendall(request % i)
            buf = sock.recv(65536)
            while not buf.endswith(b"\n"):
                more = sock.recv(65536)
                if not more:
                    raise RuntimeError("server closed the connection")
                buf += more
            if i >= 200:  # warm-up
                out.append(time.perf_counter() - t0)
    finally:
        sock.close()
    return out


def dbus_sequential(address: str, count: int) -> list[float]:
    from jeepney.io.blocking import open_dbus_connection

    conn = open_dbus_connection(bus=address)
    msg = peers.check_message(os.getpid())
    out: list[float] = []
    try:
        for i in range(count + 200):
            t0 = time.perf_counter()
            reply = conn.send_and_get_reply(msg)
            if i >= 200:
                out.append(time.perf_counter() - t0)
            if not reply.body[0][0]:
                raise RuntimeError("polkit did not authorize the bench action")
    finally:
        conn.close()
    return out


def spawned(once: Callable[[], float], count: int) -> list[float]:
    once()  # warm-up (page cache)
    return [once() for _ in range(count)]


# --- many clients, asyncio --------------------------------------------------------------------


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


async def drive(path: str, clients: int, total: int) -> tuple[list[float], float]:
    per = max(1, total // clients)
    latencies: list[float] = []
    await one_client(path, 200, [])  # warm-up
    t0 = time.perf_counter()
    await asyncio.gather(*(one_client(path, per, latencies) for _ in range(clients)))
    return latencies, time.perf_counter() - t0


def measure(
    path: str, clients: int, total: int, pids: dict[str, int], request: bytes = REQUEST
) -> tuple[dict[str, float], list[float]]:
    """One measured run; adds CPU µs per request for each process in `pids`."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    if clients == 1:
        latencies = lines_sequential(path, total, request)
        figures = summary(latencies)
        n = figures["requests"] + 200
    else:
        latencies, wall = asyncio.run(drive(path, clients, total))
        figures = summary(latencies, wall)
        n = figures["requests"] + 200
    for name, pid in pids.items():
        figures[f"{name}_cpu_us_per_req"] = (cpu_seconds(pid) - before[name]) / n * 1e6
    return figures, latencies


# --- the run ----------------------------------------------------------------------------------


def run(
    requests: int, clients: list[int], rounds: int, spawn_count: int, before: str | None = None
) -> dict[str, Any]:
    """Every figure of the decision bench, in one run."""
    root = rig.shared_tmpdir("clawvisor-bench-")
    old_root = rig.shared_tmpdir("clawvisor-bench-before-") if before else None
    old = None
    floor_path = str(root / "echo.sock")
    floor = subprocess.Popen(
        [sys.executable, str(HERE / "echo_floor.py"), floor_path], stdout=subprocess.PIPE, text=True
    )
    assert floor.stdout is not None and floor.stdout.readline().strip() == "ready"
    daemon = None
    rows: list[dict[str, Any]] = []
    samples: dict[str, list[float]] = {}
    try:
        with rig.journald() as journal, peers.polkit() as pk, peers.sudo_user() as sudoer:
            rig.write_config(
                root, workloads={"bench": "root"}, policy={"10.toml": POLICY}, settings=SETTINGS
            )
            daemon = rig.start_daemon(root)
            # The trail's journald: the namespaced one the daemon writes to.
            trail = journal.trail_proc
            jpid = trail.pid if trail is not None else None
            pids = {"server": daemon.proc.pid}
            if jpid is not None:
                pids["journald"] = jpid
            old_pids: dict[str, int] = {}
            if before and old_root is not None:
                rig.write_config(
                    old_root,
                    workloads={"bench": "root"},
                    policy={"10.toml": POLICY},
                    settings=SETTINGS,
                )
                old = rig.start_daemon(old_root, env={"PYTHONPATH": before})
                old_pids = {"server": old.proc.pid, **({"journald": jpid} if jpid else {})}
            for n in clients:
                # Every series is measured once per round, back to back, so that a slow
                # spell of the machine hits all of them alike; figures are medians.
                series: dict[str, list[dict[str, float]]] = {}
                lat: dict[str, list[float]] = {}
                for _ in range(rounds):
                    got = {
                        "floor": measure(floor_path, n, requests, {"server": floor.pid}),
                        "clawvisor": measure(str(daemon.intents), n, requests, pids),
                    }
                    if n == 1:
                        got["denied"] = measure(str(daemon.intents), n, requests, pids, DENIED)
                        if old is not None:
                            got["before"] = measure(str(old.intents), n, requests, old_pids)
                        d = dbus_sequential(pk.address, min(requests, 3000))
                        got["polkit_dbus"] = (summary(d), d)
                        each = max(1, spawn_count // rounds)
                        p = spawned(lambda: peers.pkcheck_once(pk), each)
                        got["pkcheck"] = (summary(p), p)
                        s = spawned(lambda: peers.sudo_once(sudoer), each)
                        got["sudo"] = (summary(s), s)
                    else:
                        d, wall = peers.run_dbus(pk.address, n, max(1, requests // n))
                        got["polkit_dbus"] = (summary(d, wall), d)
                    for name, (figures, latencies) in got.items():
                        series.setdefault(name, []).append(figures)
                        lat.setdefault(name, []).extend(latencies)
                row: dict[str, Any] = {"clients": n}
                row.update({name: median_of(r) for name, r in series.items()})
                row["clawvisor"].setdefault("journald_cpu_us_per_req", float("nan"))
                row["polkit_over_clawvisor_p50"] = statistics.median(
                    p["p50_us"] / c["p50_us"]
                    for p, c in zip(series["polkit_dbus"], series["clawvisor"], strict=True)
                )
                if n == 1:
                    names = {
                        "clawvisor": "clawvisor",
                        "floor": "echo floor",
                        "polkit_dbus": "polkit D-Bus",
                        "pkcheck": "pkcheck",
                        "sudo": "sudo -n",
                    }
                    samples = {label: keep(lat[key]) for key, label in names.items()}
                rows.append(row)
                print(
                    f"  {n} client(s): clawvisor p50 {row['clawvisor']['p50_us']:.0f} µs, "
                    f"{row['clawvisor']['throughput_rps']:.0f} req/s",
                    flush=True,
                )
            fallback = len(daemon.fallback_records())
    finally:
        floor.terminate()
        floor.wait()
        if daemon is not None:
            daemon.stop()
        if old is not None:
            old.stop()
        rig.cleanup_root(root)
        if old_root is not None:
            rig.cleanup_root(old_root)
    return {
        "machine": machine(),
        "rounds": rounds,
        "requests": requests,
        "net.unix.max_dgram_qlen": Path("/proc/sys/net/unix/max_dgram_qlen").read_text().strip(),
        "audit_fallback_records": fallback,
        "rows": rows,
        "samples_us": samples,
        "before": before,
    }


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| clients | figure | clawvisor | echo floor | polkit D-Bus | clawvisor vs polkit |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        c, f, p, n = row["clawvisor"], row["floor"], row["polkit_dbus"], row["clients"]
        out.append(
            f"| {n} | p50 µs | {c['p50_us']:.0f} | {f['p50_us']:.0f} | {p['p50_us']:.0f} "
            f"| {row['polkit_over_clawvisor_p50']:.1f}x faster |"
        )
        out.append(
            f"| {n} | p99 µs | {c['p99_us']:.0f} | {f['p99_us']:.0f} | {p['p99_us']:.0f} "
            f"| {p['p99_us'] / c['p99_us']:.1f}x faster |"
        )
        out.append(
            f"| {n} | req/s | {c['throughput_rps']:.0f} | {f['throughput_rps']:.0f} "
            f"| {p['throughput_rps']:.0f} "
            f"| {c['throughput_rps'] / p['throughput_rps']:.1f}x more |"
        )
        if n == 1:
            out.append(
                f"| 1 | CPU µs/req (daemon + journald) | {c['server_cpu_us_per_req']:.0f} + "
                f"{c['journald_cpu_us_per_req']:.0f} | {f['server_cpu_us_per_req']:.0f} | - | - |"
            )
            if "denied" in row:
                d = row["denied"]
                out.append(
                    f"| 1 | p50 µs, denied (no executor, no result) | {d['p50_us']:.0f} "
                    f"| {f['p50_us']:.0f} | - | - |"
                )
            if "before" in row:
                b = row["before"]
                out.append(
                    f"| 1 | p50 µs, the `--before` build | {b['p50_us']:.0f} "
                    f"| {f['p50_us']:.0f} | - | {b['p50_us'] / c['p50_us']:.2f}x ours |"
                )
            for key, name in (("pkcheck", "pkcheck"), ("sudo", "sudo -n")):
                s = row[key]
                out.append(
                    f"| 1 | p50 µs vs {name} | {c['p50_us']:.0f} | - | {name}: "
                    f"{s['p50_us']:.0f} | {s['p50_us'] / c['p50_us']:.0f}x faster |"
                )
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--spawns", type=int, default=200, help="pkcheck and sudo runs")
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="also serve `status` from the code in DIR (a checkout of another commit)",
    )
    args = parser.parse_args()
    result = run(args.requests, args.clients, args.rounds, args.spawns, args.before)
    result["table"] = table(result["rows"])
    write_result("roundtrip", result)
    print(f"machine: {result['machine']}")
    print(result["table"])
    print(f"audit: every request audited; {result['audit_fallback_records']} in the fallback")
    return 0


if __name__ == "__main__":
    sys.exit(main())
