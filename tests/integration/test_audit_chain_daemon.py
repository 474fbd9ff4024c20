"""The audit chain of a real daemon, read back from journald: intact, and continued
across a clean restart and across a SIGKILL (whose chain head on disk is stale).
"""

from __future__ import annotations

import json
import signal
import subprocess

from tests.helpers import rig
from tests.helpers.rules import rule

POLICY = rule("status")


def verify(daemon: rig.Daemon) -> tuple[int, dict]:
    proc = subprocess.run(
        [
            str(rig.CLAWVISOR),
            "audit",
            "verify",
            "--json",
            "--state-dir",
            str(daemon.root / "state"),
            "--log-dir",
            str(daemon.root / "log"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, json.loads(proc.stdout)


def traffic(daemon: rig.Daemon, user: rig.User, n: int) -> None:
    for i in range(n):
        reply = rig.call(daemon.intents, user, {"action": "status"}, rid=f"c{i}")
        assert reply["status"] == "ok"


def test_a_daemons_records_in_journald_are_an_intact_chain(make_user, make_daemon, journal):
    user = make_user()
    daemon = make_daemon({"w": user}, {"10.toml": POLICY})
    traffic(daemon, user, 5)
    code, verdict = verify(daemon)
    assert code == 0, verdict
    assert verdict["first"] == 1 and verdict["records"] >= 7  # policy, start, 5 decisions
    assert not daemon.fallback.exists()


def test_the_chain_continues_across_a_restart(make_user, make_daemon, journal):
    user = make_user()
    daemon = make_daemon({"w": user}, {"10.toml": POLICY})
    traffic(daemon, user, 3)
    _, before = verify(daemon)
    daemon.restart()
    traffic(daemon, user, 3)
    code, after = verify(daemon)
    assert code == 0, after
    assert after["chain"] == before["chain"]
    assert after["last"] > before["last"]


def test_the_chain_continues_after_a_sigkill(make_user, make_daemon, journal):
    user = make_user()
    daemon = make_daemon({"w": user}, {"10.toml": POLICY})
    traffic(daemon, user, 3)  # within the head's save interval: the file is behind
    daemon.signal(signal.SIGKILL)
    daemon.proc.wait(10)
    daemon.restart()
    traffic(daemon, user, 2)
    code, verdict = verify(daemon)
    assert code == 0, verdict
    assert verdict["first"] == 1
