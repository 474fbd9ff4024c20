"""Starting up: a broken policy means deny-all (said loudly); the embedded demo config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.helpers import rig
from tests.helpers.rig import call
from tests.helpers.rules import rule

GOOD = rule("status")


def test_broken_policy_at_start_runs_deny_all_and_says_why(make_user, make_daemon, journal):
    user = make_user()
    daemon = make_daemon(
        {"w": user}, {"10-good.toml": GOOD, "20-bad.toml": '[[rule]]\naction = "status"\nnope\n'}
    )
    reply = call(daemon.intents, user, {"action": "status"})
    assert reply["status"] == "denied" and reply["rule"] == "default"
    assert "20-bad.toml:3" in daemon.stderr()
    assert "deny-all" in daemon.stderr()
    crit = journal.wait_entries(
        1, SYSLOG_IDENTIFIER="clawvisor", PRIORITY="2", CLAWVISOR_KIND="policy"
    )
    assert any("20-bad.toml:3" in e["MESSAGE"] for e in crit)


def test_status_on_the_control_socket_reports_deny_all_reason(make_user, make_daemon):
    from supervisor.wire.client import Client

    user = make_user()
    daemon = make_daemon({"w": user}, {"10.toml": "[[rule]]\nbroken = \n"})
    with Client(daemon.control) as c:
        reply, _ = c.control("status")
    assert reply.result["policy"]["rules"] == 0
    assert "10.toml:2" in reply.result["policy"]["error"]


def test_sigterm_stops_cleanly_and_removes_the_sockets(make_user, make_daemon):
    user = make_user()
    daemon = make_daemon({"w": user}, {"10.toml": GOOD})
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(10) == 0
    assert not daemon.intents.exists() and not daemon.control.exists()


def test_a_second_daemon_refuses_to_steal_a_live_socket(make_user, make_daemon):
    user = make_user()
    daemon = make_daemon({"w": user}, {"10.toml": GOOD})
    second = subprocess.run(
        [
            str(rig.CLAWVISOR),
            "serve",
            "--config-dir",
            str(daemon.config_dir),
            "--runtime-dir",
            str(daemon.intents.parent),
            "--log-dir",
            str(daemon.root / "log2"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 2
    assert "in use" in second.stderr
    assert call(daemon.intents, user, {"action": "status"})["status"] == "ok"


def test_embedded_demo_config_maps_the_sudo_user_to_demo(make_user, journal):
    user = make_user()
    root = rig.shared_tmpdir("clawvisor-demo-")
    env = {"PATH": os.environ["PATH"], "SUDO_UID": str(user.uid)}
    proc = subprocess.Popen(
        [
            str(rig.CLAWVISOR),
            "serve",
            "--runtime-dir",
            str(root / "run"),
            "--log-dir",
            str(root / "log"),
            "--state-dir",
            str(root / "state"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sock = root / "run" / "intents.sock"
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not os.path.isdir("/etc/clawvisor"):
            ok = call(sock, user, {"action": "status"})
            assert ok["status"] == "ok" and ok["result"]["workloads"] == ["demo"]
            rid = f"demo-ask-{os.getpid()}-{time.monotonic_ns()}"
            with rig.connect_as(sock, user) as s:
                s.sendall(
                    rig.request_line(rid, {"action": "open-url", "url": "https://example.org/"})
                )
                [pending] = journal.wait_entries(
                    1, CLAWVISOR_INTENT_ID=rid, CLAWVISOR_KIND="decision"
                )
            assert pending["CLAWVISOR_DECISION"] == "ask"
            assert pending["CLAWVISOR_OUTCOME"] == "pending"
            denied = call(sock, user, {"action": "search", "query": "x"})
            assert denied["error"]["code"] == "policy_denied"
            assert ok["result"]["policy"]["rules"] == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
        rig.cleanup_root(root)
    if not os.path.isdir("/etc/clawvisor"):
        assert "embedded demo config" in err
        assert "socat" in err and "clawvisor send" in err


def test_send_cli_exit_codes(make_user, make_daemon):
    user = make_user()
    daemon = make_daemon({"w": None}, {"10.toml": GOOD})  # root is the workload here
    base = [str(rig.CLAWVISOR), "send", "--socket", str(daemon.intents)]
    ok = subprocess.run([*base, "status"], capture_output=True, text=True)
    assert ok.returncode == 0 and '"status":"ok"' in ok.stdout
    denied = subprocess.run(
        [*base, "open-url", "url=https://e.org/"], capture_output=True, text=True
    )
    assert denied.returncode == 1 and '"policy_denied"' in denied.stdout
    bad = subprocess.run([*base, "open-url", "url=gopher://x"], capture_output=True, text=True)
    assert bad.returncode == 2 and '"invalid_params"' in bad.stdout
    missing = subprocess.run(
        [str(rig.CLAWVISOR), "send", "--socket", "/nonexistent/s", "status"],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "/nonexistent/s" in missing.stderr
    assert user  # the fixture user keeps module teardown uniform


def test_help_is_available_on_every_command():
    for argv in ([], ["serve"], ["send"]):
        out = subprocess.run(
            [sys.executable, "-m", "supervisor", *argv, "--help"], capture_output=True, text=True
        )
        assert out.returncode == 0 and "usage:" in out.stdout
