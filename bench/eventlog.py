"""The kept event log (supervisor/monitors/eventlog.py) at the monitors' rates, beside
journald and a plain append, and the daemon's decisions while it keeps events.

1. The writer: events (the monitors' own `Open` structs) handed to `EventLog.append` on
   an asyncio loop at a paced rate for --seconds, in 1 ms batches as the ring buffer's
   drain hands them over; then the log is closed and read back with the reader
   `clawvisor monitor --since` uses (eventlog.read). Kept = lines read back; a sink's
   rate without loss is the highest pace it took events at with every one read back.
   The loop's lateness (how late its 1 ms ticks ran) says what the writer thread's share
   of the GIL cost the loop. Beside it, in the same run and at the same rates: a private
   journald namespace (rate limit off, so only its own speed counts) fed one native
   datagram per event, the JSON line as MESSAGE (the send waits when journald's queue is
   full, as the audit trail's does, so a journald that cannot keep up slows the loop);
   and a plain append (one write() per event, on the loop).
2. The daemon: a real `clawvisor serve` with the BPF monitor and the kept log, a workload
   user opening /dev/null for writing at --daemon-rates (bench/open_load.py), and another
   workload asking `status` once a millisecond the whole time (a gateway's decisions):
   their p50/p99, idle, under the event load with the kept log, and under the same load
   with the kept log off (--rounds rounds interleaved, medians). Kept = the load's opens
   found in the log directory afterwards. At a rate the daemon keeps up with, the
   difference is the kept log's; at 100,000/s it is what the whole pipeline does at the
   monitors' stated full rate.

Writes bench/results/eventlog.json.

    .venv/bin/python -m bench.eventlog [--rates 100000 200000 400000] [--seconds 5]
        [--daemon-rates 10000 100000] [--daemon-seconds 10] [--rounds 3]
        [--parts writer daemon]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from bench.common import RESULTS, cpu_seconds, lossless_rate, machine, settled, write_result
from bench.monitors import Load
from supervisor.audit.journal import encode_fields
from supervisor.monitors import eventlog
from supervisor.monitors import events as ev
from tests.helpers import rig

POLICY = '[[rule]]\naction = "status"\nsource = "*"\ntarget = "*"\ndecision = "allow"\n'
LOG_ON = "[monitors]\noverlay = false\ncounters = false\n"
LOG_OFF = LOG_ON + "event_log = false\n"
NAMESPACE = "cvbench"
JOURNALD_CONF = Path(f"/etc/systemd/journald@{NAMESPACE}.conf")
JOURNALD_ERR = Path(f"/tmp/clawvisor-bench-journald-{NAMESPACE}.err")
TICK = 0.001


# --- 1. the writer, in process ------------------------------------------------------------


def sample_events(n: int = 1024) -> list[ev.Open]:
    """Open events as the syscall monitor makes them (distinct pids, one path)."""
    now = time.time()
    return [
        ev.Open(
            ts=now,
            workload="w",
            uid=990,
            pid=10000 + i,
            ppid=1,
            comm="python3",
            result=3,
            path="/dev/null",
            flags=1,
            write=True,
            create=False,
        )
        for i in range(n)
    ]


def lateness(ticks: list[float]) -> dict[str, float]:
    """p50/p99/max of how late the loop's ticks ran (ms)."""
    s = sorted(ticks)
    return {
        "lag_p50_ms": round(statistics.median(s) * 1e3, 3) if s else 0.0,
        "lag_p99_ms": round(s[max(0, int(len(s) * 0.99) - 1)] * 1e3, 3) if s else 0.0,
        "lag_max_ms": round(s[-1] * 1e3, 3) if s else 0.0,
    }


async def paced(sink: Callable[[ev.Open], None], rate: int, seconds: float) -> dict[str, float]:
    """Hand `rate` events a second to `sink` for `seconds`, in TICK batches, on this loop."""
    events = sample_events()
    n = len(events)
    done = 0
    late: list[float] = []
    t0 = time.perf_counter()
    due_at = t0
    while True:
        now = time.perf_counter()
        late.append(max(0.0, now - due_at))
        if now - t0 >= seconds:
            break
        # At most 10 ms' worth at once: a sink that blocks must not keep the loop from
        # seeing the clock (the run ends on time, having fallen behind).
        due = min(int((now - t0) * rate), done + max(1000, rate // 100))
        for i in range(done, due):
            sink(events[i % n])
        done = max(done, due)
        due_at = max(due_at + TICK, time.perf_counter())
        await asyncio.sleep(max(0.0, due_at - time.perf_counter()))
    elapsed = time.perf_counter() - t0
    return {"offered": done, "achieved_rate": round(done / elapsed), **lateness(late)}


def count_read_back(directory: Path) -> int:
    return sum(1 for _ in eventlog.read(directory, 0.0))


def ours_writer(rate: int, seconds: float, tmp: Path) -> dict[str, Any]:
    directory = tmp / f"events-{rate}"
    log = eventlog.EventLog(directory)
    log.start()
    cpu0 = time.process_time()
    run = asyncio.run(paced(log.append, rate, seconds))
    t0 = time.perf_counter()
    log.close()
    drain_s = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    kept = count_read_back(directory)
    size = sum(p.stat().st_size for p in eventlog.segments(directory))
    shutil.rmtree(directory, ignore_errors=True)
    return {
        "offered_rate": rate,
        **run,
        "written": log.written,
        "dropped": log.dropped,
        "kept": kept,
        "lost": run["offered"] - kept,
        "drain_after_s": round(drain_s, 3),
        "cpu_s": round(cpu, 2),
        "bytes_per_event": round(size / max(kept, 1), 1),
    }


def append_writer(rate: int, seconds: float, tmp: Path) -> dict[str, Any]:
    """The same lines, one write() per event on the loop (no batching, no thread)."""
    path = tmp / f"plain-{rate}.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    encode = msgspec.json.Encoder().encode

    def write(e: ev.Open) -> None:
        os.write(fd, encode(e) + b"\n")

    cpu0 = time.process_time()
    try:
        run = asyncio.run(paced(write, rate, seconds))
    finally:
        os.close(fd)
    cpu = time.process_time() - cpu0
    with path.open("rb") as f:
        kept = sum(1 for _ in f)
    path.unlink()
    return {
        "offered_rate": rate,
        **run,
        "kept": kept,
        "lost": run["offered"] - kept,
        "cpu_s": round(cpu, 2),
    }


@contextlib.contextmanager
def private_journald() -> Iterator[subprocess.Popen[bytes]]:
    """A journald of its own namespace (volatile, no rate limit), stopped and removed after."""
    wrote_conf = not JOURNALD_CONF.exists()
    if wrote_conf:
        JOURNALD_CONF.write_text(
            "[Journal]\nStorage=volatile\nRateLimitIntervalSec=0\nRateLimitBurst=0\n"
            "RuntimeMaxUse=2G\n"
        )
    sock = f"/run/systemd/journal.{NAMESPACE}/socket"
    proc = subprocess.Popen(
        [rig.JOURNALD, NAMESPACE], stdout=subprocess.DEVNULL, stderr=JOURNALD_ERR.open("wb")
    )
    try:
        deadline = time.monotonic() + 10
        while not rig.journald_listening(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bench's journald did not start")
            time.sleep(0.05)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if wrote_conf:
            JOURNALD_CONF.unlink(missing_ok=True)
        for d in (
            Path(f"/run/log/journal/{Path('/etc/machine-id').read_text().strip()}.{NAMESPACE}"),
            Path(f"/run/systemd/journal.{NAMESPACE}"),
        ):
            shutil.rmtree(d, ignore_errors=True)


def journal_count(tag: str) -> int:
    out = subprocess.run(
        [
            "journalctl",
            f"--namespace={NAMESPACE}",
            "--no-pager",
            "-o",
            "cat",
            f"BENCH_RUN={tag}",
        ],
        capture_output=True,
        check=False,
    ).stdout
    return out.count(b"\n")


def journald_writer(rate: int, seconds: float, jproc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """One native datagram per event; the send waits while journald's queue is full."""
    tag = f"{rate}-{uuid.uuid4().hex[:8]}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.connect(f"/run/systemd/journal.{NAMESPACE}/socket")
    encode = msgspec.json.Encoder().encode
    prefix = encode_fields([("SYSLOG_IDENTIFIER", "clawvisor-bench"), ("BENCH_RUN", tag)])

    def send(e: ev.Open) -> None:
        sock.send(prefix + encode_fields([("MESSAGE", encode(e).decode())]))

    cpu0, jcpu0 = time.process_time(), cpu_seconds(jproc.pid)
    try:
        run = asyncio.run(paced(send, rate, seconds))
    finally:
        sock.close()
    kept = settled(lambda: journal_count(tag), int(run["offered"]), poll=0.5)
    return {
        "offered_rate": rate,
        **run,
        "kept": kept,
        "lost": run["offered"] - kept,
        "cpu_s": round(time.process_time() - cpu0, 2),
        "journald_cpu_s": round(cpu_seconds(jproc.pid) - jcpu0, 2),
    }


def journald_at(rate: int, seconds: float) -> dict[str, Any]:
    """The journald run at `rate` on a journald of its own (a fresh one each rate, so one
    rate's entries do not weigh on the next); once more if that journald went away."""
    for attempt in range(2):
        try:
            with private_journald() as jproc:
                return {**journald_writer(rate, seconds, jproc), "attempt": attempt + 1}
        except OSError as exc:
            print(f"journald at {rate}/s: {exc!r}; {JOURNALD_ERR.read_text()[-500:]}")
    raise RuntimeError(f"the bench's journald failed twice at {rate}/s")


# --- 2. the daemon's decisions under the event load ---------------------------------------


class Asker:
    """A workload's gateway asking `status` once every `period` seconds, each timed."""

    def __init__(self, path: Path, user: rig.User, period: float = 0.001) -> None:
        self.sock = rig.connect_as(path, user)
        self.period = period
        self.latencies: list[float] = []
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self._ask()
        except (OSError, RuntimeError) as exc:
            self.error = repr(exc)

    def _ask(self) -> None:
        sock, i = self.sock, 0
        next_at = time.perf_counter()
        while not self._stop.is_set():
            i += 1
            t0 = time.perf_counter()
            sock.sendall(b'{"id":"%d","intent":{"action":"status"}}\n' % i)
            buf = sock.recv(65536)
            while not buf.endswith(b"\n"):
                more = sock.recv(65536)
                if not more:
                    raise RuntimeError("the daemon closed the connection")
                buf += more
            self.latencies.append(time.perf_counter() - t0)
            if not buf.startswith(b'{"id":"%d","status":"ok"' % i):
                raise RuntimeError(f"status was not allowed: {buf[:300]!r}")
            next_at += self.period
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            else:
                next_at = time.perf_counter()

    def __enter__(self) -> Asker:
        for i in range(200):  # warm the connection before anything is measured
            self.sock.sendall(b'{"id":"w%d","intent":{"action":"status"}}\n' % i)
            rig.read_lines(self.sock, 1)
        self.sock.settimeout(300)  # a starved daemon answers late, but it answers
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self.sock.close()

    def summary(self) -> dict[str, float]:
        s = sorted(self.latencies)
        if not s or self.error:
            raise RuntimeError(f"the asker failed: {self.error or 'no decision came back'}")
        return {
            "decisions": len(s),
            "p50_us": round(statistics.median(s) * 1e6, 1),
            "p99_us": round(s[max(0, int(len(s) * 0.99) - 1)] * 1e6, 1),
            "max_us": round(s[-1] * 1e6, 1),
        }


def counts(d: rig.Daemon, timeout: float = 120.0) -> dict[str, int]:
    """The bpf monitor's and the kept log's counts (a busy daemon may take a while)."""
    with rig.connect_as(d.control, None, timeout=timeout) as c:
        c.sendall(b'{"id":"s","op":"status"}\n')
        reply = rig.read_lines(c, 1, timeout=timeout)[0]
    by = {m["name"]: m for m in reply["result"]["monitors"]}
    if by["bpf"]["state"] != "ok":
        raise RuntimeError(f"monitor bpf is {by['bpf']['state']}: {by['bpf']['detail']}")
    log = by.get("event-log", {}).get("counts", {"written": 0, "dropped": 0})
    return {**by["bpf"]["counts"], "log_written": log["written"], "log_dropped": log["dropped"]}


def opens_kept(directory: Path, uid: int, since: float) -> int:
    """The load's opens (its uid, /dev/null for writing) in the kept log."""
    return sum(
        1
        for o in eventlog.read(directory, since)
        if o.get("kind") == "open" and o.get("uid") == uid and o.get("path") == "/dev/null"
    )


def daemon_row(
    watched: rig.User, gateway: rig.User, rate: int, seconds: float, log_on: bool
) -> dict[str, Any]:
    root = rig.shared_tmpdir("clawvisor-bench-evlog-")
    rig.write_config(
        root,
        workloads={"w": watched, "gw": gateway},
        policy={"10.toml": POLICY},
        settings=LOG_ON if log_on else LOG_OFF,
    )
    d = rig.start_daemon(root, ready_timeout=120)
    try:
        row: dict[str, Any] = {"offered_rate": rate, "event_log": log_on}
        if rate == 0:
            with Asker(d.intents, gateway) as asker:
                time.sleep(seconds)
            row.update(asker.summary())
            return row
        load = Load(watched, "--rate", str(rate), "--seconds", str(seconds))
        before = counts(d)
        since = time.time()
        cpu0 = cpu_seconds(d.proc.pid)
        with Asker(d.intents, gateway) as asker:
            done = load.run()
        load.close()
        opens = int(done["opens"])
        # Wait until the daemon has decoded all it will (its counts stop moving).
        last: dict[str, int] = {}
        for _ in range(100):
            now = counts(d)
            if now == last:
                break
            last = now
            time.sleep(0.5)
        after = last
        row.update(
            {
                "achieved_rate": round(done["rate"]),
                "opens": opens,
                "captured": after["events"] - before["events"],
                "kernel_lost": after["lost"] - before["lost"],
                "daemon_cpu_s": round(cpu_seconds(d.proc.pid) - cpu0, 2),
                **asker.summary(),
            }
        )
        if log_on:
            row["log_written"] = after["log_written"] - before["log_written"]
            row["log_dropped"] = after["log_dropped"] - before["log_dropped"]
            d.stop()  # the writer flushes what is pending on the way out
            row["kept"] = opens_kept(root / "log" / "events", watched.uid, since - 1)
            row["lost"] = opens - row["kept"]
        return row
    finally:
        d.stop()
        rig.cleanup_root(root)


# --- report --------------------------------------------------------------------------------


def table(data: dict[str, Any]) -> str:
    out = [
        "| offered events/s | kept log: kept / offered | loop lateness p99 (ms) "
        "| journald: kept / offered | its pace | plain append: kept / offered | its pace |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    writer = zip(
        data.get("writer", []), data.get("journald", []), data.get("append", []), strict=False
    )
    for o, j, a in writer:
        out.append(
            f"| {o['offered_rate']:,} | {o['kept']:,} / {o['offered']:,} | {o['lag_p99_ms']:.2f} "
            f"| {j['kept']:,} / {j['offered']:,} | {j['achieved_rate']:,}/s "
            f"| {a['kept']:,} / {a['offered']:,} | {a['achieved_rate']:,}/s |"
        )
    out += [
        "",
        "| daemon run | opens/s offered (reached) | opens kept in the log | status p50 (µs) "
        "| status p99 (µs) | daemon CPU (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in data.get("daemon", []):
        if r["offered_rate"] == 0:
            name, load, kept, cpu = "idle, kept log on", "-", "-", "-"
        else:
            name = "event load, kept log " + ("on" if r["event_log"] else "off")
            load = f"{r['offered_rate']:,} ({r['achieved_rate']:,})"
            kept = f"{r['kept']:,} / {r['opens']:,}" if r["event_log"] else "(off)"
            cpu = f"{r['daemon_cpu_s']:.1f}"
        out.append(f"| {name} | {load} | {kept} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | {cpu} |")
    return "\n".join(out)


PARTS = ("writer", "daemon")


def writer_part(rates: list[int], seconds: float) -> dict[str, Any]:
    """Part 1 at each rate: the kept log's writer, journald, the plain append."""
    tmp = Path(tempfile.mkdtemp(prefix="clawvisor-bench-evlog-", dir="/tmp"))
    rows: dict[str, list[dict[str, Any]]] = {"writer": [], "journald": [], "append": []}
    try:
        for rate in rates:
            rows["writer"].append(ours_writer(rate, seconds, tmp))
            rows["journald"].append(journald_at(rate, seconds))
            rows["append"].append(append_writer(rate, seconds, tmp))
            for k, v in rows.items():
                print(f"rate {rate} {k}: {v[-1]}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "seconds": seconds,
        **rows,
        **{f"{k}_best": lossless_rate(v) for k, v in rows.items()},
    }


def daemon_part(rates: list[int], seconds: float, rounds: int) -> dict[str, Any]:
    """Part 2: idle, then each rate with the kept log on and off, `rounds` times
    interleaved (a slow spell of the machine hits every run alike); per run, medians."""
    watched, gateway = rig.create_user(), rig.create_user()
    runs: dict[tuple[int, bool], list[dict[str, Any]]] = {}
    try:
        with rig.journald():
            for i in range(rounds):
                for rate, log_on in [(0, True)] + [(r, on) for r in rates for on in (True, False)]:
                    row = daemon_row(watched, gateway, rate, seconds, log_on)
                    runs.setdefault((rate, log_on), []).append(row)
                    print(f"round {i + 1}, rate {rate}, log {log_on}: {row}", flush=True)
    finally:
        rig.delete_user(watched)
        rig.delete_user(gateway)
    flat = [r for v in runs.values() for r in v]
    return {
        "daemon": aggregate(flat),
        "daemon_rounds": flat,
        "daemon_seconds": seconds,
        "rounds": rounds,
    }


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's figures for the rounds: the counts of the round that captured the median
    number of events (so they add up), the latencies' and CPU's medians over all rounds."""
    ranked = sorted(rows, key=lambda r: r.get("captured", 0))
    out = dict(ranked[(len(ranked) - 1) // 2])
    for k in ("decisions", "p50_us", "p99_us", "max_us", "daemon_cpu_s"):
        if k in out:
            out[k] = statistics.median(r[k] for r in rows)
    return out


def aggregate(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (rate, kept log on/off), in the order first run."""
    by: dict[tuple[int, bool], list[dict[str, Any]]] = {}
    for r in rounds:
        by.setdefault((r["offered_rate"], r["event_log"]), []).append(r)
    return [median_row(v) for v in by.values()]


def utc_now() -> str:
    """When a part finished, UTC, to the minute."""
    return f"{datetime.now(UTC):%Y-%m-%d %H:%M}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates", type=int, nargs="+", default=[50000, 100000, 200000, 400000, 800000]
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--daemon-rates", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--daemon-seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3, help="of the daemon part")
    parser.add_argument(
        "--parts",
        nargs="*",
        choices=PARTS,
        default=list(PARTS),
        help="what to measure (the rest: the last run's figures; none: only the table again)",
    )
    args = parser.parse_args()
    path = RESULTS / "eventlog.json"
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if args.parts:
        data.pop("measured", None)
    if args.parts:
        data.update({"machine": machine(), "load_before": os.getloadavg()})
    if "writer" in args.parts:
        data.update(writer_part(args.rates, args.seconds), writer_measured=utc_now())
    if "daemon" in args.parts:
        data.update(daemon_part(args.daemon_rates, args.daemon_seconds, args.rounds))
        data["daemon_measured"] = utc_now()
    if data.get("daemon_rounds"):
        data["daemon"] = aggregate(data["daemon_rounds"])
    for k in ("writer", "journald", "append"):
        if k in data:
            data[f"{k}_best"] = lossless_rate(data[k])
    data["load_after"] = os.getloadavg()
    data["parts"] = args.parts
    data["table"] = table(data)
    write_result("eventlog", data)
    print(data["table"])
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
