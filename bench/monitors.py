"""The monitors under load, each beside a peer measured in the same run.

1. Loss at rising rates: a workload user opens /dev/null for writing at a paced rate for
   --seconds (bench/open_load.py). clawvisor's syscall monitor (the daemon, with its
   default settings and triggers: kernel filter, ring buffer, decode, lineage, trigger
   engine) against bpftrace attached to the same tracepoint with the same uid filter,
   printing each event to a file. Captured = events the daemon's status counted (all
   opens: the load does nothing else meanwhile) or lines bpftrace wrote.
2. Slowdown: the same load flat out (--count opens) with no monitor, under bpftrace, and
   under clawvisor; and as a user clawvisor does not watch, with and without clawvisor
   (once the daemon has drained the traced run's events: `backlog_s` says how long).
3. Overlay burst: 20,000 files in 500 new nested directories written into a watched
   upper layer; files reported by the daemon's watcher (through `monitor`, as a viewer
   sees them) beside `inotifywait -mr` on the same directory in the same burst.

Writes bench/results/monitors.json.

    .venv/bin/python -m bench.monitors [--rates 25000 50000 100000 150000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, machine, settled, tree_cpu_seconds, write_result
from tests.helpers import rig

HERE = Path(__file__).resolve().parent
LOAD = HERE / "open_load.py"
POLICY = '[[rule]]\naction = "status"\nsource = "*"\ntarget = "*"\ndecision = "allow"\n'
BPF_SETTINGS = "[monitors]\noverlay = false\ncounters = false\n"
OVERLAY_SETTINGS = "[monitors]\nbpf = false\ncounters = false\n"
PARTS = ("loss", "slowdown", "overlay")
SLOW_RUNS = (
    "none",
    "bpftrace",
    "clawvisor",
    "untraced_none",
    "untraced_bpftrace",
    "untraced_clawvisor",
)


# --- the load --------------------------------------------------------------------------


class Load:
    """bench/open_load.py as a user, started and waiting for the word."""

    def __init__(self, user: rig.User, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", "-S", str(LOAD), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            **rig.as_user(user),
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the load did not start")

    def run(self) -> dict[str, float]:
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


# --- clawvisor ---------------------------------------------------------------------------


@contextlib.contextmanager
def daemon(user: rig.User, settings: str, *, overlay: bool = False) -> Iterator[rig.Daemon]:
    root = rig.shared_tmpdir("clawvisor-bench-mon-")
    rig.write_config(
        root,
        workloads={"w": user},
        policy={"10.toml": POLICY},
        settings=settings,
        workload_extra={"w": 'overlay = { lower = "/srv" }'} if overlay else None,
    )
    if overlay:
        upper = root / "state" / "overlay" / "w" / "upper"
        upper.mkdir(parents=True)
        os.chown(upper, user.uid, user.gid)
    d = rig.start_daemon(root, ready_timeout=120)
    try:
        yield d
    finally:
        d.stop()
        rig.cleanup_root(root)


def monitor_counts(d: rig.Daemon, name: str) -> dict[str, int]:
    with rig.connect_as(d.control, None) as c:
        c.sendall(b'{"id":"s","op":"status"}\n')
        reply = rig.read_lines(c, 1)[0]
    [m] = [m for m in reply["result"]["monitors"] if m["name"] == name]
    if m["state"] != "ok":
        raise RuntimeError(f"monitor {name} is {m['state']}: {m['detail']}")
    return m["counts"]


def drained(d: rig.Daemon, before: int, expected: int, quiet: float = 2.0) -> dict[str, int]:
    """Counts once the daemon has all `expected` events, or has seen none for `quiet` s."""
    last, since = -1, time.monotonic()
    while True:
        counts = monitor_counts(d, "bpf")
        got = counts["events"] - before
        if got >= expected:
            return counts
        if got != last:
            last, since = got, time.monotonic()
        elif time.monotonic() - since > quiet:
            return counts
        time.sleep(0.1)


def ours_loss(d: rig.Daemon, user: rig.User, rate: int, seconds: float) -> dict[str, float]:
    load = Load(user, "--rate", str(rate), "--seconds", str(seconds))
    before = monitor_counts(d, "bpf")
    cpu0 = tree_cpu_seconds(d.proc.pid)
    done = load.run()
    after = drained(d, before["events"], int(done["opens"]))
    cpu = tree_cpu_seconds(d.proc.pid) - cpu0
    load.close()
    captured = after["events"] - before["events"]
    return {
        "offered_rate": rate,
        "achieved_rate": round(done["rate"]),
        "opens": done["opens"],
        "captured": captured,
        "lost": done["opens"] - captured,
        "kernel_lost": after["lost"] - before["lost"],
        "throttle_alerts": after["throttled"] - before["throttled"],
        "daemon_cpu_s": round(cpu, 2),
    }


# --- bpftrace --------------------------------------------------------------------------


@contextlib.contextmanager
def bpftrace(uid: int, out: Path) -> Iterator[subprocess.Popen[bytes]]:
    """bpftrace on sys_enter_openat for `uid`'s writes, one printed line per event."""
    program = (
        "tracepoint:syscalls:sys_enter_openat "
        f"/uid == {uid} && (args->flags & 3) != 0/ "
        '{ printf("open %d %d %s %s\\n", pid, uid, comm, str(args->filename)); }'
    )
    err = out.with_suffix(".err")
    with err.open("wb") as errf:
        proc = subprocess.Popen(
            ["bpftrace", "-o", str(out), "-e", program], stdout=errf, stderr=errf
        )
    try:
        deadline = time.monotonic() + 60
        while "Attaching" not in (out.read_text() if out.exists() else ""):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bpftrace did not attach: {err.read_text()}")
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def bpftrace_loss(user: rig.User, rate: int, seconds: float, tmp: Path) -> dict[str, float]:
    out = tmp / f"bpftrace-{rate}.txt"
    load = Load(user, "--rate", str(rate), "--seconds", str(seconds))
    with bpftrace(user.uid, out) as proc:
        cpu0 = cpu_seconds(proc.pid)
        done = load.run()
        time.sleep(1.0)  # let it print what is in its buffers
        cpu = cpu_seconds(proc.pid) - cpu0
    load.close()
    lines = out.read_text(errors="replace").splitlines()
    captured = sum(1 for ln in lines if ln.startswith("open "))
    reported = sum(int(ln.split()[1]) for ln in lines if ln.startswith("Lost "))
    return {
        "offered_rate": rate,
        "achieved_rate": round(done["rate"]),
        "opens": done["opens"],
        "captured": captured,
        "lost": done["opens"] - captured,
        "reported_lost": reported,
        "cpu_s": round(cpu, 2),
    }


# --- slowdown ----------------------------------------------------------------------------


def timed(user: rig.User, count: int) -> float:
    load = Load(user, "--count", str(count))
    done = load.run()
    load.close()
    return done["seconds"]


def slowdown(
    watched: rig.User, other: rig.User, count: int, rounds: int, tmp: Path
) -> dict[str, float]:
    """The load's run time under each monitor; rounds interleaved, medians."""
    times: dict[str, list[float]] = {k: [] for k in SLOW_RUNS}
    backlog: list[float] = []
    for _ in range(rounds):
        times["none"].append(timed(watched, count))
        times["untraced_none"].append(timed(other, count))
        with bpftrace(watched.uid, tmp / "slow.txt"):
            times["bpftrace"].append(timed(watched, count))
            times["untraced_bpftrace"].append(timed(other, count))
        with daemon(watched, BPF_SETTINGS) as d:
            times["clawvisor"].append(timed(watched, count))
            # The untraced run measures the kernel's path, not a daemon still busy with
            # the traced run's events on the other core.
            backlog.append(settle_cpu(d.proc.pid))
            times["untraced_clawvisor"].append(timed(other, count))
    slow: dict[str, float] = {k: statistics.median(v) for k, v in times.items()}
    slow["bpftrace_ratio"] = slow["bpftrace"] / slow["none"]
    slow["clawvisor_ratio"] = slow["clawvisor"] / slow["none"]
    for k in ("untraced_clawvisor", "untraced_bpftrace"):
        slow[f"{k}_ratio"] = slow[k] / slow["untraced_none"]
    slow["backlog_s"] = statistics.median(backlog)
    return {"count": count, "rounds": rounds, **slow}


def settle_cpu(pid: int, idle: float = 0.05, step: float = 0.5, limit: float = 120.0) -> float:
    """Wait until process `pid` uses under `idle` of a core over `step` seconds (it has
    drained what it was given); the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        c0 = tree_cpu_seconds(pid)
        time.sleep(step)
        if tree_cpu_seconds(pid) - c0 < idle * step:
            break
    return round(time.monotonic() - t0, 2)


# --- overlay burst -------------------------------------------------------------------------


class Viewer:
    """`monitor` on the control socket: distinct files reported created."""

    def __init__(self, control: Path) -> None:
        self.sock = rig.connect_as(control, None, timeout=None)
        self.sock.sendall(b'{"id":"m","op":"monitor","kinds":["file","overflow"]}\n')
        self.files: set[str] = set()
        self.overflows = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(1 << 20):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for ln in lines:
                    obj = json.loads(ln)
                    if obj.get("kind") == "file" and obj.get("op") == "create":
                        if not obj.get("is_dir"):
                            self.files.add(obj["path"])
                    elif obj.get("kind") == "overflow":
                        self.overflows += 1


def burst_round(d: rig.Daemon, upper: Path, tag: str, tmp: Path) -> dict[str, float]:
    out = tmp / f"inotifywait-{tag}.txt"
    err = tmp / f"inotifywait-{tag}.err"
    viewer = Viewer(d.control)
    with out.open("wb") as o, err.open("wb") as e:
        peer = subprocess.Popen(
            ["inotifywait", "-m", "-r", "-q", "-e", "create", "--format", "%w%f", str(upper)],
            stdout=o,
            stderr=e,
        )
    try:
        time.sleep(1.0)  # inotifywait -q says nothing when its watches are set
        top = upper / f"burst-{tag}"
        expected = 0
        t0 = time.perf_counter()
        for n in range(500):
            path = top / f"d{n // 50}" / f"n{n}" / "deep"
            path.mkdir(parents=True)
            for f in range(40):
                (path / f"f{f}.txt").write_text("x")
                expected += 1
        write_s = time.perf_counter() - t0
        ours = settled(lambda: len(viewer.files), expected)

        def peer_files() -> int:
            return len({ln for ln in out.read_text().splitlines() if ln.endswith(".txt")})

        theirs = settled(peer_files, expected)
    finally:
        peer.send_signal(signal.SIGTERM)
        peer.wait(10)
        viewer.sock.close()
    shutil.rmtree(top, ignore_errors=True)
    return {
        "files": expected,
        "write_s": round(write_s, 3),
        "clawvisor": ours,
        "clawvisor_overflows": viewer.overflows,
        "inotifywait": theirs,
    }


# --- report ---------------------------------------------------------------------------------


def report(data: dict[str, Any]) -> str:
    """The figures as markdown tables (the parts that were measured)."""
    out: list[str] = []
    if data.get("loss_clawvisor"):
        out += loss_table(data)
    if "slowdown" in data:
        out += slowdown_table(data["slowdown"])
    if data.get("overlay"):
        out += ["", "## Overlay burst (20,000 files, 500 new nested directories)", ""]
        out.append("| round | clawvisor | inotifywait -mr | overflows |")
        out.append("| --- | --- | --- | --- |")
        for i, r in enumerate(data["overlay"]):
            out.append(
                f"| {i + 1} | {r['clawvisor']} | {r['inotifywait']} | {r['clawvisor_overflows']} |"
            )
    return "\n".join(out)


def loss_table(data: dict[str, Any]) -> list[str]:
    out = ["## Loss at rising rates (opens for writing by one workload uid)", ""]
    out.append(
        "| offered/s | achieved/s ours | captured ours | lost ours | achieved/s bpftrace "
        "| captured bpftrace | lost bpftrace |"
    )
    out.append("| --- | --- | --- | --- | --- | --- | --- |")
    for o, b in zip(data["loss_clawvisor"], data["loss_bpftrace"], strict=True):
        out.append(
            f"| {o['offered_rate']} | {o['achieved_rate']} | {o['captured']}/{o['opens']} "
            f"| {o['lost']} (kernel {o['kernel_lost']}, throttle alerts {o['throttle_alerts']}) "
            f"| {b['achieved_rate']} | {b['captured']}/{b['opens']} | {b['lost']} |"
        )
    return out


def slowdown_table(s: dict[str, Any]) -> list[str]:
    out = [
        "",
        f"## Slowdown ({s['count']} opens flat out, median of {s['rounds']} rounds)",
        "",
        "| run | seconds | slowdown |",
        "| --- | --- | --- |",
    ]
    for key in SLOW_RUNS:
        out.append(f"| {key} | {s[key]:.3f} | {s.get(key + '_ratio', 1.0):.3f}x |")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates", type=int, nargs="+", default=[25000, 50000, 100000, 150000, 200000]
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--count", type=int, default=300000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure"
    )
    args = parser.parse_args()
    for tool in ("bpftrace", "inotifywait"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install bpftrace inotify-tools")
    tmp = rig.shared_tmpdir("clawvisor-bench-peer-")
    watched = rig.create_user()
    other = rig.create_user()
    # Another process's load shows in every figure here: say how loaded the machine was.
    data: dict[str, Any] = {"machine": machine(), "load_before": os.getloadavg()}
    try:
        with rig.journald():
            ours_rows, peer_rows = [], []
            for rate in args.rates if "loss" in args.parts else ():
                with daemon(watched, BPF_SETTINGS) as d:
                    ours_rows.append(ours_loss(d, watched, rate, args.seconds))
                peer_rows.append(bpftrace_loss(watched, rate, args.seconds, tmp))
                print(f"rate {rate}: ours {ours_rows[-1]}\n           bpftrace {peer_rows[-1]}")
            data["loss_clawvisor"], data["loss_bpftrace"] = ours_rows, peer_rows
            if "slowdown" in args.parts:
                data["slowdown"] = slowdown(watched, other, args.count, args.rounds, tmp)
                print(f"slowdown {data['slowdown']}")
            bursts = []
            if "overlay" in args.parts:
                with daemon(watched, OVERLAY_SETTINGS, overlay=True) as d:
                    upper = d.root / "state" / "overlay" / "w" / "upper"
                    for i in range(args.bursts):
                        bursts.append(burst_round(d, upper, str(i), tmp))
                        print(f"burst {i + 1}: {bursts[-1]}")
            data["overlay"] = bursts
    finally:
        rig.delete_user(watched)
        rig.delete_user(other)
        rig.cleanup_root(tmp)
    data["load_after"] = os.getloadavg()
    path = write_result("monitors", data)
    print()
    print(report(data))
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
