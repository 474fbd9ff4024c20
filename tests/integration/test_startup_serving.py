"""Starting the BPF monitor (seconds of clang) never holds up intents: the daemon answers
while the program compiles, and says READY=1 once it is attached."""

from __future__ import annotations

import threading
import time

from tests.helpers import rig
from tests.helpers.rig import call
from tests.helpers.rules import rule

SETTINGS = (
    '[server]\nsocket_group = "cvt-no-such-group"\n'
    "[monitors]\nenabled = true\nbpf = true\noverlay = false\ncounters = false\n"
)


def test_intents_are_answered_while_the_bpf_program_compiles(make_user):
    user = make_user()
    root = rig.shared_tmpdir("clawvisor-test-")
    rig.write_config(
        root, workloads={"w": user}, policy={"10.toml": rule("status")}, settings=SETTINGS
    )
    started: list[rig.Daemon] = []
    ready = threading.Thread(
        target=lambda: started.append(rig.start_daemon(root, ready_timeout=120))
    )
    ready.start()
    try:
        sock = root / "run" / "intents.sock"
        deadline = time.monotonic() + 60
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        reply = call(sock, user, {"action": "status"})
        answered_before_ready = ready.is_alive()
        ready.join(120)
        assert reply["status"] == "ok"
        assert started, "the daemon never said READY=1"
        bpf = started[0]
        assert answered_before_ready, "the reply waited for the BPF compile"
        with rig.connect_as(bpf.control, None) as c:
            c.sendall(b'{"id":"s","op":"status"}\n')
            [mon] = [m for m in rig.read_lines(c, 1)[0]["result"]["monitors"] if m["name"] == "bpf"]
        assert mon["state"] in ("ok", "degraded")  # decided by READY=1, either way
    finally:
        ready.join(120)
        for d in started:
            d.stop()
        rig.cleanup_root(root)
