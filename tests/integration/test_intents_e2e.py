"""End to end over the real socket, with two real Linux users mapped to two workloads."""

from __future__ import annotations

import json
import os
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import rig
from tests.helpers.rig import call, connect_as, read_lines, request_line
from tests.helpers.rules import rule

RECORDER = Path(__file__).resolve().parents[1] / "helpers" / "recorder.py"

POLICY = (
    "\n"
    + rule("status", "alpha")
    + rule(
        "open-url",
        "alpha",
        "allow",
        "@self",
        params={"url": '{ glob = "https://allowed.example/*" }'},
    )
    + rule("open-url", "alpha", "deny", "beta")
    + rule("open-url", "*", "ask", timeout=0.5)
)


@dataclass(frozen=True)
class Setup:
    """A daemon with workloads alpha and beta, a user who is neither, and the file the
    opener's recorder writes to."""

    daemon: rig.Daemon
    alpha: rig.User
    beta: rig.User
    outsider: rig.User
    record_file: Path


@pytest.fixture(scope="module")
def setup(make_user, make_daemon, journal):
    alpha, beta, outsider = make_user(), make_user(), make_user()
    record_dir = rig.shared_tmpdir("clawvisor-rec-")
    record_dir.chmod(0o1777)
    record_file = record_dir / "calls.jsonl"
    settings = (
        '[server]\nsocket_group = "cvt-no-such-group"\n'
        "[executors.open-url]\n"
        f'argv = ["/usr/bin/python3", "{RECORDER}", "{record_file}", "{{url}}"]\n'
        "timeout = 10\n"
    )
    daemon = make_daemon({"alpha": alpha, "beta": beta}, {"10-rules.toml": POLICY}, settings)
    yield Setup(daemon, alpha, beta, outsider, record_file)
    rig.cleanup_root(record_dir)


def test_allow_rule_runs_the_executor_and_names_the_rule(setup):
    daemon = setup.daemon
    alpha = setup.alpha
    reply = call(daemon.intents, alpha, {"action": "status"})
    assert reply["status"] == "ok"
    assert reply["decision"] == "allow"
    assert reply["rule"] == "policy.d/10-rules.toml:2"
    assert reply["result"]["action"] == "status"
    # A workload's status names only itself (the operator's, on control.sock, names all).
    assert reply["result"]["workloads"] == ["alpha"]


def test_a_workloads_status_shows_only_what_concerns_it(setup):
    mine = call(setup.daemon.intents, setup.alpha, {"action": "status"})["result"]
    assert mine["workloads"] == ["alpha"]
    assert mine["policy"]["files"] == [] and mine["monitors"] == [] and mine["grants"] == 0
    assert mine["policy"]["rules"] >= 1 and mine["policy"]["error"] is None
    assert "beta" not in json.dumps(mine)
    with rig.connect_as(setup.daemon.control, None) as c:
        c.sendall(b'{"id":"s","op":"status"}\n')
        full = rig.read_lines(c, 1)[0]["result"]
    assert sorted(full["workloads"]) == ["alpha", "beta"]
    assert full["policy"]["files"] == ["policy.d/10-rules.toml"]


def test_no_matching_rule_is_default_deny(setup):
    daemon = setup.daemon
    beta = setup.beta
    reply = call(daemon.intents, beta, {"action": "status"})
    assert reply["status"] == "denied"
    assert reply["decision"] == "deny"
    assert reply["rule"] == "default"
    assert reply["error"]["code"] == "policy_denied"


def test_deny_rule_denies_and_names_the_rule(setup):
    daemon = setup.daemon
    alpha = setup.alpha
    reply = call(
        daemon.intents, alpha, {"action": "open-url", "target": "beta", "url": "https://x.example/"}
    )
    assert reply["status"] == "denied"
    assert reply["rule"] == "policy.d/10-rules.toml:16"
    assert reply["error"]["code"] == "policy_denied"


def test_allowed_open_url_runs_opener_as_target_user_with_url_as_one_argument(setup):
    daemon = setup.daemon
    alpha = setup.alpha
    record_file = setup.record_file
    url = "https://allowed.example/a;b$(touch${IFS}/tmp/pwned)&c=`id`|sh"
    reply = call(daemon.intents, alpha, {"action": "open-url", "target": "alpha", "url": url})
    assert reply["status"] == "ok", reply
    assert reply["result"] == {
        "action": "open-url",
        "url": url,
        "target": "alpha",
        "exit_status": 0,
    }
    rec = json.loads(record_file.read_text().splitlines()[-1])
    assert rec["args"] == [url]
    assert (rec["uid"], rec["euid"], rec["gid"]) == (alpha.uid, alpha.uid, alpha.gid)
    assert rec["groups"] in ([], [alpha.gid])
    assert set(rec["env"]) <= {"PATH", "HOME", "USER", "LOGNAME", "LANG"}
    assert rec["env"]["USER"] == alpha.name and rec["env"]["LANG"] == "C.UTF-8"
    assert rec["cwd"] == "/"
    assert rec["umask"] == 0o077
    assert rec["pgid_is_pid"] and rec["stdin_is_devnull"]
    assert not os.path.exists("/tmp/pwned")


def test_ask_with_nobody_to_answer_ends_as_approval_timeout(setup):
    daemon = setup.daemon
    beta = setup.beta
    reply = call(
        daemon.intents, beta, {"action": "open-url", "target": "beta", "url": "https://b.example/"}
    )
    assert reply["status"] == "denied"
    assert reply["decision"] == "ask"
    assert reply["error"]["code"] == "approval_timeout"


def test_unknown_action_is_a_typed_error(setup):
    daemon = setup.daemon
    alpha = setup.alpha
    reply = call(daemon.intents, alpha, {"action": "rm-rf", "path": "/"})
    assert reply["status"] == "error"
    assert reply["error"]["code"] == "unknown_action"


@pytest.mark.parametrize(
    "intent, field",
    [
        ({"action": "open-url", "url": "ftp://example.org/"}, "url"),
        ({"action": "open-url", "url": "https://user:pw@example.org/"}, "url"),
        ({"action": "open-url", "url": "https://example.org/" + "a" * 2100}, "url"),
        ({"action": "open-url"}, "url"),
        ({"action": "open-url", "url": 7}, "url"),
        ({"action": "open-url", "url": "https://e.org/", "target": "no_such!"}, "target"),
        ({"action": "open-url", "url": "https://e.org/", "shell": "sh"}, "shell"),
    ],
)
def test_invalid_params_name_the_field(setup, intent, field):
    daemon = setup.daemon
    alpha = setup.alpha
    reply = call(daemon.intents, alpha, intent)
    assert reply["status"] == "error"
    assert reply["error"]["code"] == "invalid_params"
    assert field in reply["error"]["message"]


def test_target_must_be_an_existing_workload(setup):
    daemon = setup.daemon
    alpha = setup.alpha
    reply = call(
        daemon.intents,
        alpha,
        {"action": "open-url", "target": "ghost", "url": "https://a.example/"},
    )
    assert reply["error"]["code"] == "invalid_params"
    assert "ghost" in reply["error"]["message"]


def test_identity_comes_from_the_kernel_not_the_message(setup, journal):
    daemon = setup.daemon
    beta = setup.beta
    rid = f"spoof-{uuid.uuid4().hex[:8]}"
    # beta claims to be alpha in every way a message could; the daemon ignores claims
    # that are not part of the protocol and refuses unknown fields outright.
    for intent in (
        {"action": "status", "source": "alpha"},
        {"action": "status", "workload": "alpha"},
    ):
        reply = call(daemon.intents, beta, intent, rid)
        assert reply["error"]["code"] in ("invalid_params", "bad_request")
    with connect_as(daemon.intents, beta) as sock:
        sock.sendall(
            json.dumps({"id": rid, "source": "alpha", "intent": {"action": "status"}}).encode()
            + b"\n"
        )
        assert read_lines(sock, 1)[0]["error"]["code"] == "bad_request"
    reply = call(daemon.intents, beta, {"action": "status"}, rid)
    assert reply["rule"] == "default"  # alpha may, beta may not
    entries = journal.wait_entries(1, CLAWVISOR_INTENT_ID=rid, CLAWVISOR_KIND="decision")
    assert entries and entries[-1]["CLAWVISOR_WORKLOAD"] == "beta"
    assert entries[-1]["CLAWVISOR_UID"] == str(beta.uid)


def test_socket_is_only_reachable_by_workload_users(setup):
    daemon = setup.daemon
    alpha = setup.alpha
    outsider = setup.outsider
    st = daemon.intents.stat()
    assert stat.S_IMODE(st.st_mode) == 0o660
    with pytest.raises(PermissionError):
        connect_as(daemon.intents, outsider)
    connect_as(daemon.intents, alpha).close()


def test_unknown_uid_gets_unauthorized_and_is_disconnected(setup):
    daemon = setup.daemon
    outsider = setup.outsider
    # Open the file mode for this test so the daemon's own check is what refuses.
    daemon.intents.chmod(0o666)
    try:
        with connect_as(daemon.intents, outsider) as sock:
            sock.sendall(request_line("u1", {"action": "status"}))
            replies = read_lines(sock, 2)
            assert len(replies) == 1
            assert replies[0]["error"]["code"] == "unauthorized"
            assert replies[0]["id"] is None
            assert rig.is_closed(sock)
    finally:
        daemon.intents.chmod(0o660)


def test_control_socket_refuses_non_root(setup):
    daemon = setup.daemon
    alpha = setup.alpha
    assert stat.S_IMODE(daemon.control.stat().st_mode) == 0o600
    daemon.control.chmod(0o666)
    try:
        with connect_as(daemon.control, alpha) as sock:
            sock.sendall(b'{"id":"c1","op":"status"}\n')
            assert read_lines(sock, 1)[0]["error"]["code"] == "unauthorized"
    finally:
        daemon.control.chmod(0o600)
    with connect_as(daemon.control, None) as sock:
        sock.sendall(b'{"id":"c1","op":"status"}\n')
        reply = read_lines(sock, 1)[0]
    assert reply["status"] == "ok" and reply["result"]["action"] == "status"


def test_executor_failure_reports_exit_status_and_stderr(make_user, make_daemon):
    user = make_user()
    root_rec = rig.shared_tmpdir("clawvisor-rec-")
    root_rec.chmod(0o1777)
    settings = (
        '[server]\nsocket_group = "cvt-no-such-group"\n[executors.open-url]\n'
        f'argv = ["/usr/bin/python3", "{RECORDER}", "{root_rec}/x.jsonl", "--exit=3", "{{url}}"]\n'
    )
    policy = rule("open-url", "w")
    daemon = make_daemon({"w": user}, {"a.toml": policy}, settings)
    try:
        reply = call(daemon.intents, user, {"action": "open-url", "url": "https://e.org/"})
    finally:
        rig.cleanup_root(root_rec)
    assert reply["status"] == "error"
    assert reply["error"]["code"] == "executor_failed"
    assert reply["error"]["exit_status"] == 3
    assert "forced failure" in reply["error"]["stderr"]
