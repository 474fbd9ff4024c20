"""The syscall monitor cannot be blinded quietly: a flooding uid is throttled and that is
an alert; events the ring buffer had no room for are counted in the kernel and reported.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.helpers import rig
from tests.helpers.rules import rule
from tests.helpers.stream import Stream

POLICY = rule("status")
FLOOD = "import os\nfor _ in range({n}):\n    os.close(os.open('/dev/null', os.O_WRONLY))\n"


def flood(user: rig.User, n: int) -> None:
    subprocess.run(
        ["/usr/bin/python3", "-S", "-c", FLOOD.format(n=n)],
        check=True,
        timeout=60,
        **rig.as_user(user),
    )


def bpf_counts(daemon: rig.Daemon) -> dict[str, int]:
    with rig.connect_as(daemon.control, None) as c:
        c.sendall(b'{"id":"s","op":"status"}\n')
        reply = rig.read_lines(c, 1)[0]
    [bpf] = [m for m in reply["result"]["monitors"] if m["name"] == "bpf"]
    assert bpf["state"] == "ok", bpf
    return bpf["counts"]


@pytest.fixture
def start(make_user, make_daemon):
    def go(monitors: str) -> tuple[rig.Daemon, rig.User, Stream]:
        user = make_user()
        daemon = make_daemon(
            {"w": user},
            {"10.toml": POLICY},
            "[monitors]\noverlay = false\ncounters = false\n" + monitors,
        )
        return daemon, user, Stream(daemon.control)

    return go


def test_a_uid_over_its_event_rate_is_throttled_and_alerted(start):
    daemon, user, stream = start("rate = 100\nburst = 100\n")
    flood(user, 3000)
    found = stream.find(lambda i: i["kind"] == "throttled" and i.get("alert") == "event-flood")
    assert found, "no throttling alert"
    assert found[0]["workload"] == "w" and found[0]["uid"] == user.uid
    assert found[0]["dropped"] > 0
    counts = bpf_counts(daemon)
    assert counts["throttled"] >= 1
    assert counts["events"] < 3000  # the flood was cut in the kernel
    stream.sock.close()


def test_events_the_ring_buffer_had_no_room_for_are_counted_and_alerted(start):
    # 16 pages hold well under a hundred events; with the daemon stopped (by its pid)
    # nothing drains them, so most of 5000 opens cannot be reserved.
    daemon, user, stream = start("rate = 0\nringbuf_pages = 16\n")
    daemon.signal(signal.SIGSTOP)
    try:
        flood(user, 5000)
    finally:
        daemon.signal(signal.SIGCONT)
    found = stream.find(lambda i: i["kind"] == "lost" and i.get("alert") == "events-lost")
    assert found, "the loss was not reported"
    deadline = time.monotonic() + 10
    counts = bpf_counts(daemon)
    while counts["lost"] < found[0]["count"] and time.monotonic() < deadline:
        time.sleep(0.2)
        counts = bpf_counts(daemon)
    assert counts["lost"] > 0
    # Every open is accounted for: delivered or counted as lost (plus the process's
    # own exec and exit events).
    assert counts["events"] + counts["lost"] >= 5000
    stream.sock.close()
