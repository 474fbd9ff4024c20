"""Footprint: the daemon's memory idle and under load, and its time from start to READY=1
with every monitor loaded (BPF compiled and attached, overlay watched, counters read),
beside polkitd and the bare asyncio echo floor measured the same way in the same run.

The daemon runs in a network namespace made for the bench, whose firewall table is
provisioned for one workload user, so that the counters monitor has its table.

    .venv/bin/python -m bench.footprint [--requests 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from bench import peers
from bench.common import machine, write_result
from bench.roundtrip import POLICY, drive
from tests.helpers import rig

HERE = Path(__file__).resolve().parent
SETTINGS = (
    '[server]\nsocket_group = "cvt-no-such-group"\nmax_connections_per_uid = 256\n'
    "[monitors]\ncounters_interval = 1.0\n"
)


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory in MiB: VmRSS, or RssAnon (private memory, without clean file
    pages such as the code of the libraries a process maps)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def anon_mib(pid: int) -> float:
    return rss_mib(pid, "RssAnon")


def tree_mib(pid: int, field: str = "VmRSS") -> float:
    """`rss_mib` of a process and its children (the daemon and its monitor worker)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    return rss_mib(pid, field) + sum(tree_mib(int(k), field) for k in kids)


def start_floor(path: str) -> tuple[subprocess.Popen[str], float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "echo_floor.py"), path], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc, time.perf_counter() - t0


def start_daemon(root: Path, user: rig.User, ns: str, monitors: bool) -> tuple[rig.Daemon, float]:
    settings = SETTINGS if monitors else SETTINGS + "enabled = false\n"
    rig.write_config(
        root,
        workloads={"bench": "root", "w": user},
        policy={"10.toml": POLICY},
        settings=settings,
        workload_extra={"w": 'overlay = { lower = "/srv" }'},
    )
    upper = root / "state" / "overlay" / "w" / "upper"
    upper.mkdir(parents=True, exist_ok=True)
    wrapper = ["nsenter", f"--net=/run/netns/{ns}", "--"]
    subprocess.run(
        [
            *wrapper,
            str(rig.CLAWVISOR),
            "provision",
            "--only",
            "firewall",
            "--config-dir",
            str(root / "etc"),
            "--state-dir",
            str(root / "state"),
        ],
        check=True,
        capture_output=True,
    )
    t0 = time.perf_counter()
    daemon = rig.start_daemon(root, wrapper=wrapper, ready_timeout=120)
    return daemon, time.perf_counter() - t0


def monitor_states(daemon: rig.Daemon) -> dict[str, str]:
    with rig.connect_as(daemon.control, None) as c:
        c.sendall(b'{"id":"s","op":"status"}\n')
        reply = rig.read_lines(c, 1)[0]
    return {m["name"]: m["state"] for m in reply["result"]["monitors"]}


def load(path: str, requests: int) -> None:
    asyncio.run(drive(path, 64, requests))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100000)
    args = parser.parse_args()
    ns = f"cvtbenchfp{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    user = rig.create_user()
    roots = [rig.shared_tmpdir("clawvisor-bench-fp-") for _ in range(2)]
    floor = None
    daemons: list[rig.Daemon] = []
    out: dict[str, float | dict[str, str]] = {}
    try:
        with rig.journald(), peers.polkit() as pk:
            out["polkitd_start_s"] = pk.startup_s
            out["polkitd_rss_idle_mib"] = rss_mib(pk.polkitd.pid)
            out["polkitd_anon_idle_mib"] = anon_mib(pk.polkitd.pid)
            floor, out["floor_start_s"] = start_floor(str(roots[0] / "echo.sock"))
            bare, out["clawvisor_bare_start_s"] = start_daemon(roots[1], user, ns, False)
            daemons.append(bare)
            out["clawvisor_bare_rss_idle_mib"] = rss_mib(bare.proc.pid)
            out["clawvisor_bare_anon_idle_mib"] = anon_mib(bare.proc.pid)
            bare.stop()
            full, out["clawvisor_start_s"] = start_daemon(roots[0], user, ns, True)
            daemons.append(full)
            out["monitors"] = monitor_states(full)
            time.sleep(2)
            out["clawvisor_rss_idle_mib"] = tree_mib(full.proc.pid)
            out["clawvisor_anon_idle_mib"] = tree_mib(full.proc.pid, "RssAnon")
            out["floor_rss_idle_mib"] = rss_mib(floor.pid)
            out["floor_anon_idle_mib"] = anon_mib(floor.pid)
            load(str(full.intents), args.requests)
            out["clawvisor_rss_load_mib"] = tree_mib(full.proc.pid)
            out["clawvisor_anon_load_mib"] = tree_mib(full.proc.pid, "RssAnon")
            load(str(roots[0] / "echo.sock"), args.requests)
            out["floor_rss_load_mib"] = rss_mib(floor.pid)
            out["floor_anon_load_mib"] = anon_mib(floor.pid)
    finally:
        if floor is not None:
            floor.terminate()
            floor.wait()
        for d in daemons:
            d.stop()
        for root in roots:
            rig.cleanup_root(root)
        rig.delete_user(user)
        subprocess.run(["ip", "netns", "delete", ns], check=False)
    result = {"machine": machine(), "requests": args.requests, **out}
    write_result("footprint", result)
    for k, v in out.items():
        print(f"{k}: {v if isinstance(v, dict) else round(v, 3)}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
