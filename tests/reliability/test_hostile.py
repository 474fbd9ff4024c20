"""A hostile workload against the trail and the other workloads: what it can make the
daemon write is bounded, it cannot lock others out or slow them much, and a sync-out of
a big file costs the others nothing. Each row reports its figures."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from supervisor.config import AuditSettings
from supervisor.wire.calls import connect_unix
from tests.helpers import rig
from tests.helpers.honest import Honest
from tests.helpers.private_journald import PrivateJournald
from tests.helpers.rig import call, connect_as
from tests.helpers.rules import rule

POLICY = rule("status") + rule("sync-out", "w", "allow", "@self")
SETTINGS = '[server]\nsocket_group = "cvt-no-such-group"\n'


pytestmark = pytest.mark.usefixtures("enough_descriptors")


def flood_in_child(path: str, user: rig.User, seconds: float, mode: str) -> subprocess.Popen:
    """A flooding workload in its own process (as that user): `garbage` sends 2-byte
    junk lines on 8 connections; `connect` opens and closes connections in a loop;
    `spin` only burns CPU (the same threads, never touching clawvisor)."""
    code = f"""
import socket, time, threading
end = time.monotonic() + {seconds}
def garbage():
    s = socket.socket(socket.AF_UNIX); s.connect({path!r}); s.setblocking(False)
    while time.monotonic() < end:
        try:
            s.send(b"x\\n" * 4096)
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:
            s = socket.socket(socket.AF_UNIX); s.connect({path!r}); s.setblocking(False)
        try:
            s.recv(1 << 20)
        except OSError:
            pass
def connect():
    while time.monotonic() < end:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect({path!r})
        except OSError:
            pass
        s.close()
def spin():
    while time.monotonic() < end:
        pass
ts = [threading.Thread(target={mode}) for _ in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
"""
    return subprocess.Popen(["/usr/bin/python3", "-c", code], **rig.as_user(user))


def uid_records(daemon: rig.Daemon, uid: int) -> list[dict]:
    out = subprocess.run(
        rig.journalctl(
            "-o",
            "json",
            f"CLAWVISOR_CHAIN={daemon.chain}",
            f"CLAWVISOR_UID={uid}",
            "CLAWVISOR_KIND=rejected",
        ),
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.mark.reliability("hostile", "a garbage flood: records per second bounded, aggregated")
def test_a_garbage_flood_writes_a_bounded_number_of_records(users, make_daemon, journal, row):
    w, v = users
    daemon = make_daemon({"w": w, "v": v}, {"10.toml": POLICY}, SETTINGS)
    seconds = 3.0
    with Honest(daemon.intents, v) as honest:
        flood = flood_in_child(str(daemon.intents), w, seconds, "garbage")
        flood.wait(60)
        row.p99_us = honest.check()
    budget = AuditSettings()
    time.sleep(budget.rejected_interval + 0.5)  # the last aggregate record, after the flood
    recs = []
    deadline = time.monotonic() + 30  # a loaded machine's journald may be slow to show it
    while time.monotonic() < deadline:
        recs = uid_records(daemon, w.uid)
        if any(r.get("CLAWVISOR_OUTCOME") == "aggregated" for r in recs):
            break
        time.sleep(0.3)
    single = [r for r in recs if r.get("CLAWVISOR_OUTCOME") != "aggregated"]
    aggregated = [r for r in recs if r.get("CLAWVISOR_OUTCOME") == "aggregated"]
    counted = sum(int(r["MESSAGE"].split(": ", 1)[1].split(" more", 1)[0]) for r in aggregated)
    row.inputs = len(single) + counted
    row.note(
        f"{len(single) + counted:,} refused lines in {seconds:g} s: {len(single)} records one "
        f"by one, {len(aggregated)} aggregate records counting {counted:,} more"
    )
    # The budget: a burst, then `rejected_rate` a second; one aggregate an interval.
    span = seconds + budget.rejected_interval + 3
    assert len(single) <= budget.rejected_burst + budget.rejected_rate * span
    assert aggregated and len(aggregated) <= span / budget.rejected_interval + 1
    assert counted > 10 * len(single)  # the flood was real, and it was counted, not written


@pytest.mark.reliability("hostile", "a connect flood at the cap: the victim still connects")
def test_a_connect_flood_at_the_cap_does_not_lock_out_another_workload(
    users, make_daemon, journal, row
):
    w, v = users
    daemon = make_daemon({"w": w, "v": v}, {"10.toml": POLICY}, SETTINGS)
    held = [connect_as(daemon.intents, w) for _ in range(16)]  # w at its cap

    def victim(n: int) -> tuple[list[float], int]:
        """New connections as the client library makes them (it retries EAGAIN)."""
        latencies, failed = [], 0
        for _ in range(n):
            t0 = time.perf_counter()
            try:
                with rig.as_euid(v.uid, v.gid):
                    sock = connect_unix(str(daemon.intents), 10)
                with sock:
                    sock.sendall(rig.request_line("v", {"action": "status"}))
                    assert rig.read_lines(sock, 1)[0]["status"] == "ok"
                latencies.append(time.perf_counter() - t0)
            except OSError:
                failed += 1
        return latencies, failed

    def under(mode: str, n: int) -> tuple[list[float], int]:
        load = flood_in_child(str(daemon.intents), w, 6.0, mode)
        time.sleep(0.5)
        try:
            return victim(n)
        finally:
            load.wait(60)

    base, _ = victim(200)
    # The floor: the same process burning CPU without touching clawvisor (on a 2-core
    # machine the flooder's threads take a core whatever the daemon does).
    busy, _ = under("spin", 400)
    during, failed = under("connect", 400)
    for sock in held:
        sock.close()

    def p99(xs: list[float]) -> float:
        return sorted(xs)[int(len(xs) * 0.99) - 1] * 1e6

    row.p99_us = p99(during)
    row.note(
        f"victim's new connections (its own socket; the flood on the shared one): p50 "
        f"{statistics.median(base) * 1e6:.0f} -> {statistics.median(during) * 1e6:.0f} µs, "
        f"p99 {p99(base):.0f} idle, {p99(busy):.0f} beside a CPU hog that never connects, "
        f"{p99(during):.0f} under the flood (aim: within 3x), {failed} failed"
    )
    assert failed == 0


@pytest.mark.reliability("hostile", "another workload during a big sync-out scan")
def test_a_big_sync_out_scan_costs_other_workloads_nothing(
    users, make_daemon, journal, profile, row
):
    w, v = users
    mib = 16 if profile.name == "full" else 2  # the scan takes seconds a MiB

    def prepare(root):
        upper = root / "state" / "overlay" / "w" / "upper"
        upper.mkdir(parents=True)
        # Text that the secret scanner reads line by line (its slow case).
        line = b"lorem ipsum dolor sit amet consectetur adipiscing elit " * 3 + b"\n"
        with (upper / "big.txt").open("wb") as f:
            while f.tell() < mib * 1024 * 1024:
                f.write(line * 1000)
        (root / "dest").mkdir()

    daemon = make_daemon(
        {"w": w, "v": v},
        {"10.toml": POLICY},
        SETTINGS + "[executors.sync-out]\ntimeout = 600\nmax_file_bytes = 33554432\n"
        "max_request_bytes = 33554432\n",
        prepare=prepare,
        workload_extra={"w": 'overlay = { lower = "/srv" }\ndestination = "/x"'},
    )
    wl = daemon.config_dir / "workloads.toml"
    wl.write_text(
        wl.read_text().replace('destination = "/x"', f'destination = "{daemon.root}/dest"')
    )
    daemon.restart()
    with Honest(daemon.intents, v) as honest:
        time.sleep(1.0)
        baseline = honest.p99_us()
        honest.latencies.clear()
        t0 = time.monotonic()
        with connect_as(daemon.intents, w, timeout=600) as sock:
            sock.sendall(rig.request_line("big", {"action": "sync-out", "paths": ["big.txt"]}))
            [reply] = rig.read_lines(sock, 1, timeout=600)
        took = time.monotonic() - t0
        row.p99_us = honest.check()
    assert reply["status"] == "ok", reply
    row.note(
        f"{mib} MiB copied and scanned in {took:.1f} s ({took / mib:.2f} s/MiB) in its own "
        f"process; the other workload's p99 {baseline:.0f} -> {row.p99_us:.0f} µs"
    )
    assert os.path.getsize(daemon.root / "dest" / "big.txt") >= mib * 1024 * 1024


SHIPPED_JOURNALD = Path(__file__).resolve().parents[2] / "units" / "journald@clawvisor.conf"
APT = (
    '[executors.install-app]\nargv = ["apt-get", "install", "--simulate", "-y", '
    '"--no-install-recommends", "--", "{package}"]\ntimeout = 120\n'
)


@pytest.mark.reliability("hostile", "an install-app's records survive a flood (shipped journal)")
def test_an_install_apps_records_survive_a_flood_at_the_shipped_journal_size(users, row):
    """The trail's journald with the limits clawvisor ships (2 GiB, a year): an earlier
    install-app stays in the trail through a garbage flood and a connect flood, because
    what one workload can make the daemon write is bounded; the row says how long that
    bounded rate would take to fill the journal."""
    w, v = users
    with PrivateJournald(config=SHIPPED_JOURNALD.read_text()) as jd:
        root = rig.shared_tmpdir("clawvisor-test-")
        rig.write_config(
            root,
            workloads={"w": w, "v": v},
            policy={"10.toml": POLICY + rule("install-app", "v")},
            settings=SETTINGS + APT,
        )
        daemon = rig.start_daemon(root, wrapper=jd.client_wrapper())
        try:
            rid = "install-before-flood"
            reply = call(daemon.intents, v, {"action": "install-app", "package": "socat"}, rid)
            assert reply["status"] == "ok", reply

            def mine() -> list[dict]:
                return jd.entries(f"CLAWVISOR_INTENT_ID={rid}")

            before = mine()
            assert len(before) >= 2  # its decision and its result
            seconds = 3.0
            for mode in ("garbage", "connect"):
                flood_in_child(str(daemon.intents), w, seconds, mode).wait(60)
            time.sleep(AuditSettings().rejected_interval + 0.5)
            flood = jd.entries(f"CLAWVISOR_UID={w.uid}")
            grown = sum(len(json.dumps(e)) for e in flood)  # every field, journald's too
            after = mine()
        finally:
            daemon.stop()
            rig.cleanup_root(root)
    assert [e["__CURSOR"] for e in after] == [e["__CURSOR"] for e in before]
    # Sustained, a flood costs rate + 1/interval records a second (the burst is once).
    budget = AuditSettings()
    steady = budget.rejected_rate + 1 / budget.rejected_interval
    per_record = grown / max(len(flood), 1)
    days = (2 << 30) / (steady * per_record) / 86400
    row.requests = len(flood)
    row.note(
        f"the flooding workload's records: {len(flood)} in {2 * seconds:g} s of garbage and "
        f"connect floods (~{per_record:.0f} bytes each as journal JSON); sustained, "
        f"{steady:g} records/s would take {days:,.0f} days to fill the shipped 2 GiB; all "
        f"{len(before)} install-app records kept"
    )


@pytest.mark.reliability("hostile", "a flood of denied intents: records bounded, the rest counted")
def test_a_flood_of_denied_intents_writes_a_bounded_number_of_records(
    users, make_daemon, journal, row
):
    """Well-formed intents the policy refuses, with the largest params allowed: the
    trail gets the budget's records one by one (params bounded, no parts), then one
    aggregate record an interval counting the rest; allowed intents are all recorded."""
    w, v = users
    daemon = make_daemon({"w": w, "v": v}, {"10.toml": POLICY}, SETTINGS)
    big = {"action": "sync-out", "target": "v", "paths": [f"{'p' * 600}{i}" for i in range(100)]}
    sent = 0
    with connect_as(daemon.intents, w) as sock:
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            for n in range(20):
                sock.sendall(rig.request_line(f"d{sent + n}", big))
            rig.read_lines(sock, 20)
            sent += 20
        sock.sendall(rig.request_line("allowed-1", {"action": "status"}))
        assert rig.read_lines(sock, 1)[0]["status"] == "ok"
    budget = AuditSettings()
    time.sleep(budget.rejected_interval + 0.5)

    def records(**match: str) -> list[dict]:
        out = subprocess.run(
            rig.journalctl("-o", "json", f"CLAWVISOR_CHAIN={daemon.chain}", "CLAWVISOR_WORKLOAD=w",
                           *(f"{k}={v}" for k, v in match.items())),
            capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        return [json.loads(ln) for ln in out.splitlines() if ln.strip()]

    single = records(CLAWVISOR_KIND="decision", CLAWVISOR_OUTCOME="policy_denied")
    parts = records(CLAWVISOR_OUTCOME="part")
    counted = [
        r for r in records(CLAWVISOR_OUTCOME="aggregated") if "refused intents" in r["MESSAGE"]
    ]
    total = sum(int(r["MESSAGE"].split(": ", 1)[1].split(" more", 1)[0]) for r in counted)
    row.requests = sent
    row.note(
        f"{sent:,} denied intents of ~60 KB each in 3 s: {len(single)} records one by one, "
        f"{len(counted)} aggregate records counting {total:,} more, {len(parts)} params parts"
    )
    assert len(single) <= budget.denied_burst + budget.denied_rate * 10
    assert not parts  # a refused intent's params are not written whole
    assert len(single) + total == sent  # every one is accounted for
    assert records(CLAWVISOR_INTENT_ID="allowed-1")  # what ran is recorded, always
