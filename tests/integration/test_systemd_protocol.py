"""The daemon's side of systemd: sockets passed by name, sd_notify (READY, STATUS,
RELOADING with MONOTONIC_USEC, WATCHDOG from the event loop, STOPPING), and a re-exec
into a newer build on reload that keeps the pid and the listening sockets.

A real systemd runs these in tests/system/; here the protocol itself is exercised with
the same environment variables and file descriptors systemd would hand over.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

from tests.helpers import rig
from tests.helpers.rules import rule

ACTIVATE = Path(__file__).resolve().parents[1] / "helpers" / "activate.py"
POLICY = rule("status")


def activated(tmp: Path, control_mode: str = "0600") -> tuple[list[str], Path, Path]:
    intents, control = tmp / "passed-intents.sock", tmp / "passed-control.sock"
    # Passed in the other order than the daemon would bind them: names decide.
    wrapper = [
        sys.executable,
        str(ACTIVATE),
        f"control={control}:{control_mode}",
        f"intents={intents}:0666",
        "--",
    ]
    return wrapper, intents, control


def status_over(path: Path, user: rig.User | None) -> dict:
    return rig.call(path, user, {"action": "status"})


def test_sockets_passed_by_name_are_served_and_none_is_bound(make_user, make_daemon):
    user = make_user()
    tmp = rig.shared_tmpdir("clawvisor-act-")
    try:
        wrapper, intents, control = activated(tmp)
        daemon = make_daemon({"w": user}, {"10.toml": POLICY}, wrapper=wrapper)
        assert status_over(intents, user)["status"] == "ok"
        with rig.connect_as(control, None) as c:
            c.sendall(b'{"id":"s","op":"status"}\n')
            assert rig.read_lines(c, 1)[0]["status"] == "ok"
        assert not daemon.intents.exists() and not daemon.control.exists()
        daemon.stop()
        assert intents.exists(), "a passed socket belongs to systemd: left in place"
    finally:
        rig.cleanup_root(tmp)


def test_a_world_accessible_passed_socket_is_flagged(make_user, make_daemon, journal):
    tmp = rig.shared_tmpdir("clawvisor-act-")
    try:
        wrapper, _, control = activated(tmp, control_mode="0666")
        daemon = make_daemon({"w": make_user()}, {"10.toml": POLICY}, wrapper=wrapper)
        assert f"{control} is mode 0666" in daemon.stderr()
        [entry] = journal.wait_entries(1, MESSAGE=daemon_message(daemon, str(control)))
        assert entry["PRIORITY"] == "2"
    finally:
        rig.cleanup_root(tmp)


def daemon_message(daemon: rig.Daemon, fragment: str) -> str:
    for line in daemon.stderr().splitlines():
        if fragment in line and "WARNING: " in line:
            return "socket activation: " + line.split("WARNING: ", 1)[1]
    raise AssertionError(f"no warning about {fragment}")


def test_ready_carries_a_status_line(make_user, make_daemon):
    daemon = make_daemon({"w": make_user()}, {"10.toml": POLICY})
    [ready] = [m for m in daemon.said if "READY=1" in m.split("\n")]
    assert "STATUS=1 workloads, policy: 1 rules" in ready.split("\n")


def test_reload_says_reloading_with_a_monotonic_timestamp_then_ready(make_user, make_daemon):
    daemon = make_daemon({"w": make_user()}, {"10.toml": POLICY})
    start = len(daemon.said)
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    daemon.signal(signal.SIGHUP)
    said = daemon.notifications("READY=1", start)
    lines = [m.split("\n") for m in said]
    reloading = next(m for m in lines if "RELOADING=1" in m)
    usec = int(next(x for x in reloading if x.startswith("MONOTONIC_USEC="))[15:])
    assert before <= usec <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert lines.index(reloading) < next(i for i, m in enumerate(lines) if "READY=1" in m)


def test_stop_says_stopping(make_user, make_daemon):
    daemon = make_daemon({"w": make_user()}, {"10.toml": POLICY})
    start = len(daemon.said)
    daemon.signal(signal.SIGTERM)
    assert any("STOPPING=1" in m.split("\n") for m in daemon.notifications("STOPPING=1", start))


def pings(daemon: rig.Daemon, start: int) -> int:
    return sum(1 for m in daemon.said[start:] if "WATCHDOG=1" in m.split("\n"))


def test_watchdog_pings_come_from_the_event_loop_and_stop_when_it_stalls(make_user, make_daemon):
    env = {"WATCHDOG_USEC": "200000", "CLAWVISOR_TEST_HOOKS": "stall"}
    user = make_user()
    daemon = make_daemon({"w": user}, {"10.toml": POLICY}, env=env)
    start = len(daemon.said)
    time.sleep(1.0)
    assert pings(daemon, start) >= 5  # every 0.1 s: half of WatchdogSec
    daemon.signal(signal.SIGUSR2)  # the test hook blocks the event loop
    time.sleep(0.3)
    stalled = len(daemon.said)
    time.sleep(1.0)
    assert pings(daemon, stalled) == 0
    assert daemon.alive()  # alive but stuck: exactly what the watchdog is for


def test_the_watchdog_is_off_when_systemd_did_not_ask(make_user, make_daemon):
    daemon = make_daemon({"w": make_user()}, {"10.toml": POLICY})
    time.sleep(0.5)
    assert pings(daemon, 0) == 0


def test_reload_after_a_newer_build_is_installed_reexecs_in_place(make_user, journal, tmp_path):
    user = make_user()
    root = rig.shared_tmpdir("clawvisor-upgrade-")
    try:
        # /opt/clawvisor/current -> releases/N, as `make install` lays it out.
        for release in ("r1", "r2"):
            (root / release / "bin").mkdir(parents=True)
            shutil.copy(rig.CLAWVISOR, root / release / "bin" / "clawvisor")
        current = root / "current"
        current.symlink_to(root / "r1")
        rig.write_config(root, workloads={"w": user}, policy={"10.toml": POLICY})
        daemon = rig.start_daemon(root, exe=current / "bin" / "clawvisor")
        try:
            pid = daemon.proc.pid
            inode = os.stat(daemon.intents).st_ino
            assert status_over(daemon.intents, user)["status"] == "ok"
            tmp_link = root / "current.new"
            tmp_link.symlink_to(root / "r2")
            tmp_link.replace(current)
            start = len(daemon.said)
            daemon.signal(signal.SIGHUP)
            said = daemon.notifications("READY=1", start, timeout=30)
            assert any("READY=1" in m.split("\n") for m in said), daemon.stderr()
            assert daemon.proc.pid == pid and daemon.alive()
            assert os.stat(daemon.intents).st_ino == inode  # the same listening socket
            assert status_over(daemon.intents, user)["status"] == "ok"
            journal.wait_entries(
                1,
                MESSAGE=f"upgrade: re-executing into {root}/r2/bin/clawvisor "
                f"(was {root}/r1/bin/clawvisor)",
            )
        finally:
            daemon.stop()
    finally:
        rig.cleanup_root(root)


RECORDER = Path(__file__).resolve().parents[1] / "helpers" / "recorder.py"


def test_an_upgrade_drains_what_runs_and_answers_pending_asks_before_the_exec(
    make_user, journal, tmp_path
):
    user = make_user()
    root = rig.shared_tmpdir("clawvisor-upgrade-")
    record = root / "calls.jsonl"
    try:
        for release in ("r1", "r2"):
            (root / release / "bin").mkdir(parents=True)
            shutil.copy(rig.CLAWVISOR, root / release / "bin" / "clawvisor")
        current = root / "current"
        current.symlink_to(root / "r1")
        policy = POLICY + rule("search", "w") + rule("install-app", "w", "ask")
        settings = (
            '[server]\nsocket_group = "cvt-no-such-group"\n[executors.search]\n'
            f'argv = ["/usr/bin/python3", "{RECORDER}", "{record}", "--sleep=1.5", "{{url}}"]\n'
        )
        rig.write_config(root, workloads={"w": user}, policy={"10.toml": policy}, settings=settings)
        root.chmod(0o1777)
        daemon = rig.start_daemon(root, exe=current / "bin" / "clawvisor")
        try:
            running = rig.connect_as(daemon.intents, user, timeout=30)
            running.sendall(rig.request_line("run", {"action": "search", "query": "q"}))
            asking = rig.connect_as(daemon.intents, user, timeout=30)
            asking.sendall(rig.request_line("ask", {"action": "install-app", "package": "hello"}))
            deadline = time.monotonic() + 10
            while not (record.exists() and "started" in record.read_text()):
                assert time.monotonic() < deadline
                time.sleep(0.02)
            tmp_link = root / "current.new"
            tmp_link.symlink_to(root / "r2")
            tmp_link.replace(current)
            daemon.signal(signal.SIGHUP)
            [asked] = rig.read_lines(asking, 1, timeout=30)
            assert asked["error"]["code"] == "unavailable"
            [ran] = rig.read_lines(running, 1, timeout=30)
            assert ran["status"] == "ok"  # finished before the hand-over, and answered
            assert '"finished": true' in record.read_text()
            # A connection made during the hand-over waits in the backlog for the new build.
            assert status_over(daemon.intents, user)["status"] == "ok"
            counts = rig.wait_final(daemon, ["run", "ask"])
            assert counts == {**counts, "run": 1, "ask": 1}
        finally:
            daemon.stop()
    finally:
        rig.cleanup_root(root)
