"""`verify` as a standing guard: the daemon runs it on its own schedule in a child process;
a FAIL is a critical alert, and the operator's `status` shows the last result."""

from __future__ import annotations

import time

from tests.helpers import rig
from tests.helpers.rules import rule

SETTINGS = '[server]\nsocket_group = "cvt-no-such-group"\n[verify]\ninterval = 1\n'


def operator_status(daemon: rig.Daemon) -> dict:
    with rig.connect_as(daemon.control, None) as c:
        c.sendall(b'{"id":"s","op":"status"}\n')
        return rig.read_lines(c, 1)[0]["result"]


def test_a_failing_standing_verify_raises_a_critical_alert_and_shows_in_status(
    make_user, make_daemon, journal
):
    # A workload that was never provisioned (no home, no firewall table): verify FAILs.
    daemon = make_daemon({"w": make_user()}, {"10.toml": rule("status")}, SETTINGS)
    state = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = operator_status(daemon).get("verify")
        if state is not None:
            break
        time.sleep(0.5)
    assert state is not None, "no standing verify ran"
    assert state["failed"] > 0 and state["at"] > time.time() - 120
    assert any(f.startswith("w: ") for f in state["failures"])
    alerts = journal.wait_entries(
        1,
        timeout=30,
        CLAWVISOR_CHAIN=daemon.chain,
        CLAWVISOR_KIND="alert",
        CLAWVISOR_OUTCOME="verify_failed",
    )
    assert alerts and alerts[0]["PRIORITY"] == "2"  # crit
    assert "check(s) FAIL" in alerts[0]["MESSAGE"]


def test_a_workloads_status_does_not_show_the_verify_result(make_user, make_daemon):
    user = make_user()
    daemon = make_daemon({"w": user}, {"10.toml": rule("status")}, SETTINGS)
    deadline = time.monotonic() + 90
    while operator_status(daemon).get("verify") is None and time.monotonic() < deadline:
        time.sleep(0.5)
    mine = rig.call(daemon.intents, user, {"action": "status"})["result"]
    assert mine.get("verify") is None
