"""The monitor worker: the BPF monitor, its triggers and the kept log run in a child of
the daemon. Killed, it is a degraded monitor and an alert, then it is started again; it
never outlives the daemon; what it catches still reaches the trail and the live viewers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import rig
from tests.helpers.rules import rule
from tests.helpers.stream import Stream

SETTINGS = "[monitors]\noverlay = false\ncounters = false\n"


def worker_pid(daemon: rig.Daemon) -> int | None:
    """The daemon's child running the monitor worker, found by its parent's pid."""
    pid = daemon.proc.pid
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    for child in children:
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"supervisor.monitors.worker" in argv:
            return int(child)
    return None


def bpf_status(daemon: rig.Daemon) -> dict:
    with rig.connect_as(daemon.control, None) as c:
        c.sendall(b'{"id":"s","op":"status"}\n')
        reply = rig.read_lines(c, 1)[0]
    [bpf] = [m for m in reply["result"]["monitors"] if m["name"] == "bpf"]
    return bpf


def wait_for(predicate, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes: it runs nothing.
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


@pytest.fixture(scope="module")
def watched(make_user, make_daemon, journal):  # journald first: the daemon's trail
    user = make_user()
    daemon = make_daemon({"w": user}, {"10.toml": rule("status")}, SETTINGS)
    assert bpf_status(daemon)["state"] == "ok"
    return daemon, user


def test_the_bpf_monitor_runs_in_a_child_of_the_daemon(watched):
    daemon, _ = watched
    pid = worker_pid(daemon)
    assert pid is not None and pid != daemon.proc.pid

    # The program and its ring buffer are the worker's, not the daemon's.
    def bpf_fds(p: int) -> int:
        n = 0
        for fd in Path(f"/proc/{p}/fd").iterdir():
            with contextlib.suppress(OSError):  # closed since the listing
                n += "bpf" in os.readlink(fd)
        return n

    assert bpf_fds(pid) > 0
    assert bpf_fds(daemon.proc.pid) == 0


def test_an_exec_caught_by_the_worker_reaches_the_live_viewer(watched):
    daemon, user = watched
    stream = Stream(daemon.control)
    try:
        subprocess.run(["/bin/true", "worker-probe"], check=True, **rig.as_user(user))
        found = stream.find(
            lambda e: e.get("kind") == "exec" and "worker-probe" in e.get("argv", [])
        )
        assert found and found[0]["workload"] == "w"
    finally:
        stream.sock.close()


def test_a_killed_worker_is_a_degraded_monitor_and_an_alert(watched, journal):
    daemon, _ = watched
    pid = worker_pid(daemon)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    degraded = journal.wait_entries(
        1,
        timeout=20,
        _PID=str(daemon.proc.pid),
        CLAWVISOR_KIND="alert",
        CLAWVISOR_RULE="monitor-degraded",
    )
    assert degraded, (
        bpf_status(daemon),
        daemon.stderr()[-3000:],
        journal.entries(_PID=str(daemon.proc.pid))[-3:],
    )
    assert any("monitor worker exited" in str(e) for e in degraded), degraded


def test_a_killed_worker_is_started_again_and_catches_events(watched):
    daemon, user = watched
    assert wait_for(lambda: bpf_status(daemon)["state"] == "ok")  # after the test before
    before = worker_pid(daemon)
    assert before is not None
    os.kill(before, signal.SIGKILL)
    again = wait_for(lambda: (p := worker_pid(daemon)) not in (None, before) and p)
    assert again, "no new worker"
    assert wait_for(lambda: bpf_status(daemon)["state"] == "ok"), bpf_status(daemon)
    assert bpf_status(daemon)["counts"]["worker_restarts"] >= 1
    stream = Stream(daemon.control)
    try:
        subprocess.run(["/bin/true", "after-restart"], check=True, **rig.as_user(user))
        assert stream.find(
            lambda e: e.get("kind") == "exec" and "after-restart" in e.get("argv", [])
        )
    finally:
        stream.sock.close()


def test_the_worker_does_not_outlive_the_daemon(make_user, make_daemon):
    user = make_user()
    daemon = make_daemon({"w": user}, {"10.toml": rule("status")}, SETTINGS)
    pid = worker_pid(daemon)
    assert pid is not None
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(10)
    assert wait_for(lambda: not alive(pid), timeout=10), "the worker outlived the daemon"
