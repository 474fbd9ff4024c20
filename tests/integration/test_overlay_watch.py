"""The overlay watcher inside the daemon: a big burst seen in full; an overflow recovered."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import rig
from tests.helpers.rules import rule
from tests.helpers.stream import Stream

SETTINGS = (
    '[server]\nsocket_group = "cvt-no-such-group"\n'
    "[monitors]\nbpf = false\ncounters = false\ndefault_triggers = true\n"
)
POLICY = rule("status")
MAX_QUEUED = Path("/proc/sys/fs/inotify/max_queued_events")


class Collector:
    def __init__(self, control: Path):
        self.sock = rig.connect_as(control, None, timeout=None)
        self.sock.sendall(b'{"id":"m","op":"monitor","kinds":["file","overflow"]}\n')
        self.files: set[str] = set()
        self.overflows: list[dict] = []
        self.alerts: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while chunk := self.sock.recv(1 << 20):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for ln in lines:
                obj = json.loads(ln)
                if (
                    obj.get("kind") == "file"
                    and obj.get("op") == "create"
                    and not obj.get("is_dir")
                ):
                    self.files.add(obj["path"])
                elif obj.get("kind") == "overflow":
                    self.overflows.append(obj)
                if obj.get("alert"):
                    self.alerts.append(obj["alert"])

    def wait_files(self, n: int, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while len(self.files) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return len(self.files)


def upper_of(daemon) -> Path:
    return daemon.root / "state" / "overlay" / "w" / "upper"


def start(make_user, make_daemon):
    user = make_user()

    def prepare(root: Path) -> None:
        up = root / "state" / "overlay" / "w" / "upper"
        up.mkdir(parents=True)
        os.chown(up, user.uid, user.gid)

    daemon = make_daemon(
        {"w": user},
        {"10.toml": POLICY},
        SETTINGS,
        prepare=prepare,
        workload_extra={"w": 'overlay = { lower = "/srv" }'},
    )
    return daemon, user


def burst(top: Path, dirs: int, per_dir: int) -> None:
    for d in range(dirs):
        path = top / f"d{d // 50}" / f"n{d}" / "deep"
        path.mkdir(parents=True)
        for f in range(per_dir):
            (path / f"f{f}.txt").write_text("x")


def test_a_burst_of_20000_files_in_500_new_nested_directories_is_seen_in_full(
    make_user, make_daemon
):
    daemon, _ = start(make_user, make_daemon)
    c = Collector(daemon.control)
    time.sleep(0.2)
    burst(upper_of(daemon), 500, 40)
    assert c.wait_files(20000) == 20000
    assert not c.overflows


def test_a_queue_overflow_is_reported_and_the_rescan_recovers_every_file(make_user, make_daemon):
    saved = MAX_QUEUED.read_text()
    MAX_QUEUED.write_text("64")
    try:
        daemon, _ = start(make_user, make_daemon)  # its inotify instance gets the tiny queue
    finally:
        MAX_QUEUED.write_text(saved)
    c = Collector(daemon.control)
    time.sleep(0.2)
    # Stop the daemon (by its pid) while the burst lands. Files written straight into
    # the watched upper layer overflow its 64-event queue; those in new directories are
    # not watched yet at all. Both must come back through rescans.
    daemon.proc.send_signal(signal.SIGSTOP)
    try:
        for i in range(500):
            (upper_of(daemon) / f"top{i}.txt").write_text("x")
        burst(upper_of(daemon), 30, 50)
    finally:
        daemon.proc.send_signal(signal.SIGCONT)
    assert c.wait_files(2000) == 2000
    assert c.overflows, "the overflow was not reported"
    assert c.overflows[0]["rescanned"] > 0
    assert "events-lost" in c.alerts


@pytest.fixture(scope="module")
def watched(make_user, make_daemon):
    return start(make_user, make_daemon)


@pytest.mark.parametrize("op", ["write", "delete", "rename", "attrib"])
def test_other_file_operations_are_reported(watched, op):
    daemon, _ = watched
    stream = Stream(daemon.control)
    target = upper_of(daemon) / f"{op}.txt"
    target.write_text("first")
    if op == "write":
        target.write_text("again, longer")
    elif op == "delete":
        target.unlink()
    elif op == "rename":
        target.rename(target.with_name("renamed.txt"))
    else:
        target.chmod(0o600)
    found = stream.find(lambda e: e.get("kind") == "file" and e.get("op") == op)
    stream.sock.close()
    [e] = found[:1]
    assert e["workload"] == "w" and e["upper"].startswith(str(upper_of(daemon)))
    if op == "write":
        assert e["size"] == len("again, longer")


def test_paths_are_where_the_workload_sees_the_file_not_the_upper_layer(watched):
    daemon, _ = watched
    stream = Stream(daemon.control)
    (upper_of(daemon) / "seen-as.txt").write_text("x")
    found = stream.find(lambda e: e.get("kind") == "file" and e.get("op") == "create")
    stream.sock.close()
    [e] = found[:1]
    # home_root is the default /home: the workload's merged view is /home/w/shared.
    assert e["path"] == "/home/w/shared/seen-as.txt"
    assert e["upper"] == str(upper_of(daemon) / "seen-as.txt")
