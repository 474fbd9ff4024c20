"""What each CPU remembers as unwatched (bpf/monitor.c, `known_unwatched`) never hides a
watched process: the remembered verdict is dropped by every change that could make it
wrong (a process first seen, a fork, user space adding a workload), and a uid or cgroup
change misses it by itself. Against the real BPF program, loaded in this process; every
process is pinned to CPU 0 so that the one per-CPU slot in question is the one used."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.monitors import events as ev
from supervisor.monitors.syscalls import SyscallMonitor, WorkloadView
from tests.helpers import rig

OPENS = "[os.close(os.open('/dev/null', os.O_WRONLY)) for _ in range(300)]"


class Monitor:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.events: list[ev.Event] = []
        self.mon = SyscallMonitor(self.events.append, rate=0)

    def watch(self, *users: rig.User) -> None:
        self.mon.set_workloads(
            {
                u.uid: WorkloadView(
                    name=u.name, home="/nonexistent", merged=None, upper=None, uid=u.uid
                )
                for u in users
            }
        )

    def opens_of(self, path: str, pid: int | None = None, wait: float = 5.0) -> list[ev.Open]:
        """The open events of `path` (by `pid`), once one is there or `wait` has passed."""
        deadline = time.monotonic() + wait
        while True:
            self.loop.run_until_complete(asyncio.sleep(0.05))
            found = [
                e
                for e in self.events
                if isinstance(e, ev.Open) and e.path == path and pid in (None, e.pid)
            ]
            if found or time.monotonic() > deadline:
                return found


@pytest.fixture(scope="module")
def monitor() -> Iterator[Monitor]:
    loop = asyncio.new_event_loop()
    m = Monitor(loop)
    if not loop.run_until_complete(m.mon.start_async(loop)):
        pytest.skip(f"the BPF monitor did not load: {m.mon.status.detail}")
    try:
        yield m
    finally:
        m.mon.stop()
        loop.close()


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = rig.shared_tmpdir("clawvisor-unwatched-")
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def root_python(code: str, *args: str, **popen: object) -> subprocess.Popen[str]:
    """Python as root, pinned to CPU 0."""
    prelude = "import os, sys\nos.sched_setaffinity(0, {0})\n"
    return subprocess.Popen(
        [sys.executable, "-S", "-c", prelude + textwrap.dedent(code), *args],
        text=True,
        **popen,  # type: ignore[call-overload]
    )


def seen_as_root(monitor: Monitor, w: rig.User, code: str, marker: str, *args: str) -> int:
    """Run `code` as root; its open of `marker` is seen, as root, as workload w's. Its pid."""
    proc = root_python(code, marker, *args)
    assert proc.wait(30) == 0
    [seen] = monitor.opens_of(marker, proc.pid)
    assert seen.uid == 0 and seen.workload == w.name
    return proc.pid


@pytest.fixture
def w(monitor: Monitor, make_user) -> rig.User:
    """A workload user, watched."""
    user: rig.User = make_user()
    monitor.watch(user)
    return user


def test_a_root_process_once_the_workload_and_root_again_stays_watched(monitor, w, scratch) -> None:
    marker = str(scratch / "after-root-again")
    code = f"""
    {OPENS}
    os.setresuid({w.uid}, {w.uid}, 0)  # the workload's uid: watched, and by lineage
    os.close(os.open("/dev/null", os.O_WRONLY))
    os.setresuid(0, 0, 0)  # root again: the uid and cgroup it had when remembered
    {OPENS}
    open(sys.argv[1], "w").write("x")
    """
    seen_as_root(monitor, w, code, marker)


def test_a_process_already_running_is_watched_once_its_uid_becomes_a_workload(
    monitor, make_user, scratch
) -> None:
    w, late = make_user(), make_user()
    monitor.watch(w)
    marker = str(scratch / "after-it-became-a-workload")
    code = f"""
    {OPENS}
    print("ready", flush=True)
    sys.stdin.readline()
    open(sys.argv[1], "w").write("x")
    """
    proc = subprocess.Popen(
        [sys.executable, "-S", "-c", "import os, sys\nos.sched_setaffinity(0, {0})\n"
         + textwrap.dedent(code), marker],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        **rig.as_user(late),
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "ready"
    assert not [e for e in monitor.events if e.pid == proc.pid]  # not watched yet
    monitor.watch(w, late)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.wait(30) == 0
    [seen] = monitor.opens_of(marker, proc.pid)
    assert seen.workload == late.name


PARENT = """
os.setresuid(int(sys.argv[2]), int(sys.argv[2]), 0)  # watched from here on, by lineage
os.close(os.open("/dev/null", os.O_WRONLY))
os.setresuid(0, 0, 0)
print("ready", flush=True)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        os.close(os.open(sys.argv[1] + "." + str(os.getpid()), os.O_WRONLY | os.O_CREAT))
        os._exit(0)
    os.waitpid(pid, 0)
    print(pid, flush=True)
"""


def test_a_watched_processs_child_that_reuses_a_remembered_pid_is_watched(
    monitor, w, scratch
) -> None:
    marker = str(scratch / "child")
    parent = root_python(PARENT, marker, str(w.uid), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert parent.stdout is not None and parent.stdin is not None
    assert parent.stdout.readline().strip() == "ready"
    try:
        for _attempt in range(20):
            # An unwatched root process, remembered as such on CPU 0 under its pid...
            other = root_python(OPENS)
            assert other.wait(30) == 0
            # ...and then that pid for the watched process's next child.
            Path("/proc/sys/kernel/ns_last_pid").write_text(str(other.pid - 1))
            parent.stdin.write("fork\n")
            parent.stdin.flush()
            child = int(parent.stdout.readline())
            if child == other.pid:
                break
        else:
            pytest.skip("no child got the pid wanted (the box forks too much)")
        [seen] = monitor.opens_of(f"{marker}.{child}", child)
        assert seen.uid == 0 and seen.workload == w.name
    finally:
        parent.stdin.close()
        parent.wait(30)


# --- a process ends with its last thread ---------------------------------------------

LINEAGE = """
os.setresuid(int(sys.argv[2]), int(sys.argv[2]), 0)  # watched from here on, by lineage
os.close(os.open("/dev/null", os.O_WRONLY))
os.setresuid(0, 0, 0)
"""


def test_a_thread_left_when_the_main_thread_exits_first_stays_watched(monitor, w, scratch) -> None:
    marker = str(scratch / "after-the-leader")
    code = (
        LINEAGE
        + """
import ctypes, threading, time
def later():
    time.sleep(0.5)
    open(sys.argv[1], "w").write("x")
    os._exit(0)
threading.Thread(target=later).start()
ctypes.CDLL(None).syscall(60, 0)  # SYS_exit: the main thread alone
"""
    )
    pid = seen_as_root(monitor, w, code, marker, str(w.uid))
    # The process's exit is its last thread's, after that open.
    deadline = time.monotonic() + 5
    while not [e for e in monitor.events if isinstance(e, ev.Exit) and e.pid == pid]:
        assert time.monotonic() < deadline, "no exit event"
        monitor.loop.run_until_complete(asyncio.sleep(0.05))


def test_a_program_a_thread_execs_stays_watched(monitor, w, scratch) -> None:
    marker = str(scratch / "after-a-thread-exec")
    then = ["python3", "-S", "-c", f"open({marker!r}, 'w').write('x')"]
    code = LINEAGE + textwrap.dedent(f"""
    import threading, time
    threading.Thread(target=os.execv, args=({sys.executable!r}, {then!r})).start()
    time.sleep(30)
    """)
    seen_as_root(monitor, w, code, marker, str(w.uid))
