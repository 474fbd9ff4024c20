"""The ask flow through the real daemon: operators, agents, verdicts, grants, restarts."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import rig
from tests.helpers.rig import call, connect_as, read_lines, request_line
from tests.helpers.rules import rule

RECORDER = Path(__file__).resolve().parents[1] / "helpers" / "recorder.py"

POLICY = (
    "\n"
    + rule(
        "open-url",
        "alpha",
        "ask",
        "@self",
        timeout=1,
        params={"url": '{ domain = "timeout.example" }'},
        dotted=True,
    )
    + rule(
        "open-url",
        "alpha",
        "ask",
        "@self",
        quorum=2,
        params={"url": '{ domain = "quorum.example" }'},
        dotted=True,
    )
    + rule("open-url", "alpha", "ask", "@self", timeout=60, grant="always")
    + rule("status")
)


class Env:
    def __init__(self, daemon, alpha, op, op2, outsider, group, record):
        self.daemon, self.alpha, self.op, self.op2 = daemon, alpha, op, op2
        self.outsider, self.group, self.record = outsider, group, record

    def control(self, op: str, user=None, **fields) -> dict:
        with connect_as(self.daemon.control, user) as sock:
            sock.sendall(json.dumps({"id": "c1", "op": op, **fields}).encode() + b"\n")
            return read_lines(sock, 1)[0]

    def ask(self, url: str, rid: str | None = None):
        """Send an ask as alpha; the open socket (read the reply later) and the id."""
        rid = rid or f"a-{uuid.uuid4().hex[:8]}"
        sock = connect_as(self.daemon.intents, self.alpha)
        sock.sendall(request_line(rid, {"action": "open-url", "target": "alpha", "url": url}))
        return sock, rid

    def wait_pending(self, url: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.control("pending")["result"]["pending"]:
                if p["params"]["url"] == url:
                    return p
            time.sleep(0.05)
        raise AssertionError(f"no pending request for {url}")

    def cli(self, *argv: str, user=None, **kw) -> subprocess.CompletedProcess[str]:
        extra = rig.as_user(user) if user is not None else {}
        return subprocess.run(
            [str(rig.CLAWVISOR), *argv, "--socket", str(self.daemon.control)],
            capture_output=True,
            text=True,
            timeout=60,
            **extra,
            **kw,
        )

    def calls(self) -> list[dict]:
        if not self.record.exists():
            return []
        return [json.loads(ln) for ln in self.record.read_text().splitlines()]


def settings(group: str, record: Path) -> str:
    return (
        '[server]\nsocket_group = "cvt-no-such-group"\n'
        f'control_group = "{group}"\n'
        "[executors.open-url]\n"
        f'argv = ["/usr/bin/python3", "{RECORDER}", "{record}", "{{url}}"]\n'
        "[approvals]\nmax_pending_per_workload = 10\n"
    )


@pytest.fixture(scope="module")
def env(make_group, make_user, make_daemon, journal):
    group = make_group()
    alpha, outsider = make_user(), make_user()
    op, op2 = make_user(groups=(group,)), make_user(groups=(group,))
    rec_dir = rig.shared_tmpdir("clawvisor-rec-")
    rec_dir.chmod(0o1777)
    record = rec_dir / "calls.jsonl"
    daemon = make_daemon({"alpha": alpha}, {"10.toml": POLICY}, settings(group, record))
    yield Env(daemon, alpha, op, op2, outsider, group, record)
    rig.cleanup_root(rec_dir)


@pytest.mark.reliability("isolation", "workloads cannot use control.sock")
def test_control_socket_admits_ops_members_and_refuses_workloads(env):
    st = env.daemon.control.stat()
    assert oct(st.st_mode & 0o777) == "0o660"
    out = env.cli("pending", user=env.op)
    assert out.returncode == 0, out.stdout + out.stderr
    refused = env.cli("pending", user=env.alpha)
    assert refused.returncode == 2 and "Permission denied" in refused.stderr
    env.daemon.control.chmod(0o666)  # past the file mode, the daemon's own check refuses
    try:
        refused = env.cli("pending", user=env.alpha)
        assert refused.returncode == 1 and "control socket is for root and group" in refused.stdout
    finally:
        env.daemon.control.chmod(0o660)


def test_ask_then_cli_approve_executes_exactly_what_was_shown(env):
    url = f"https://approve.example/{uuid.uuid4().hex[:6]}"
    sock, rid = env.ask(url)
    with sock:
        p = env.wait_pending(url)
        assert (p["workload"], p["target"], p["rule"]) == ("alpha", "alpha", "policy.d/10.toml:18")
        out = env.cli("approve", p["id"], user=env.op)
        assert out.returncode == 0 and "approved" in out.stdout, out.stdout + out.stderr
        assert url in out.stdout  # the approver was shown the request
        reply = read_lines(sock, 1)[0]
    assert reply["id"] == rid and reply["status"] == "ok" and reply["decision"] == "ask"
    assert env.calls()[-1]["args"] == [url]


def test_ask_then_cli_deny_refuses_with_the_reason(env):
    url = f"https://deny.example/{uuid.uuid4().hex[:6]}"
    sock, _ = env.ask(url)
    with sock:
        p = env.wait_pending(url)
        out = env.cli("deny", "--reason", "not now", p["id"], user=env.op)
        assert out.returncode == 0 and "denied" in out.stdout
        reply = read_lines(sock, 1)[0]
    assert reply["status"] == "denied" and reply["error"]["code"] == "approval_denied"
    assert "not now" in reply["error"]["message"]


def test_ask_nobody_answers_times_out_to_deny(env, journal):
    sock, rid = env.ask("https://timeout.example/x")
    with sock:
        reply = read_lines(sock, 1)[0]
    assert reply["error"]["code"] == "approval_timeout"
    recs = journal.wait_entries(1, CLAWVISOR_INTENT_ID=rid, CLAWVISOR_OUTCOME="timeout")
    assert recs and recs[0]["CLAWVISOR_KIND"] == "approval"


def subscribe(env, user, agent):
    sock = connect_as(env.daemon.control, user)
    sock.sendall(json.dumps({"id": "s", "op": "subscribe", "agent": agent}).encode() + b"\n")
    assert read_lines(sock, 1)[0]["status"] == "ok"
    return sock


def test_two_agents_first_verdict_wins_and_the_other_is_withdrawn(env, journal):
    a = subscribe(env, env.op, "cli")
    b = subscribe(env, env.op2, "desktop")
    url = f"https://race.example/{uuid.uuid4().hex[:6]}"
    try:
        sock, rid = env.ask(url)
        with sock:
            [ea] = read_lines(a, 1)
            [eb] = read_lines(b, 1)
            assert ea["event"] == eb["event"] == "pending"
            p = eb["request"]
            b.sendall(
                json.dumps(
                    {
                        "id": "v",
                        "op": "verdict",
                        "request": p["id"],
                        "digest": p["digest"],
                        "allow": True,
                        "agent": "desktop",
                    }
                ).encode()
                + b"\n"
            )
            withdrawn_b, taken = read_lines(b, 2)
            if "event" not in withdrawn_b:
                withdrawn_b, taken = taken, withdrawn_b
            assert taken["status"] == "ok" and taken["result"]["decided"]
            [wa] = read_lines(a, 1)
            assert wa == {
                "event": "withdrawn",
                "id": p["id"],
                "reason": "approved",
                "by": f"desktop uid:{env.op2.uid}",
            }
            a.sendall(
                json.dumps(
                    {
                        "id": "late",
                        "op": "verdict",
                        "request": p["id"],
                        "digest": p["digest"],
                        "allow": False,
                    }
                ).encode()
                + b"\n"
            )
            late = read_lines(a, 1)[0]
            assert late["status"] == "error" and "not pending" in late["error"]["message"]
            assert read_lines(sock, 1)[0]["status"] == "ok"
    finally:
        a.close()
        b.close()
    approver = f"desktop uid:{env.op2.uid}"
    recs = journal.wait_entries(
        1, CLAWVISOR_INTENT_ID=rid, CLAWVISOR_APPROVER=approver, CLAWVISOR_KIND="decision"
    )
    assert recs and recs[-1]["CLAWVISOR_OUTCOME"] == "approved"


def test_an_approval_replayed_against_a_changed_intent_is_refused(env):
    u1 = f"https://a.example/{uuid.uuid4().hex[:6]}"
    u2 = u1 + "-changed"
    s1, _ = env.ask(u1)
    s2, _ = env.ask(u2)
    with s1, s2:
        p1, p2 = env.wait_pending(u1), env.wait_pending(u2)
        refused = env.control(
            "verdict", user=env.op, request=p2["id"], digest=p1["digest"], allow=True
        )
        assert refused["status"] == "error" and "digest" in refused["error"]["message"]
        for p in (p1, p2):
            env.control("verdict", user=env.op, request=p["id"], digest=p["digest"], allow=False)
        assert read_lines(s2, 1)[0]["error"]["code"] == "approval_denied"
        read_lines(s1, 1)


def test_quorum_two_needs_two_distinct_approvers(env):
    url = f"https://quorum.example/{uuid.uuid4().hex[:6]}"
    sock, _ = env.ask(url)
    with sock:
        p = env.wait_pending(url)
        first = env.cli("approve", p["id"], user=env.op)
        assert "1 of 2 needed" in first.stdout
        again = env.cli("approve", p["id"], user=env.op)
        assert again.returncode == 1 and "already approved" in again.stdout
        second = env.cli("approve", p["id"], user=env.op2)
        assert second.returncode == 0 and "approved" in second.stdout
        assert read_lines(sock, 1)[0]["status"] == "ok"


def test_the_eleventh_pending_request_is_rate_limited(env):
    socks = []
    try:
        for n in range(10):
            socks.append(env.ask(f"https://cap.example/{n}")[0])
        for n in range(10):
            env.wait_pending(f"https://cap.example/{n}")
        sock, _ = env.ask("https://cap.example/eleventh")
        with sock:
            reply = read_lines(sock, 1)[0]
            assert reply["error"]["code"] == "rate_limited" and reply["decision"] == "deny"
    finally:
        for p in env.control("pending")["result"]["pending"]:
            env.control("verdict", request=p["id"], digest=p["digest"], allow=False)
        for s in socks:
            s.close()


def test_fifty_identical_asks_give_one_prompt(env):
    url = f"https://same.example/{uuid.uuid4().hex[:6]}"
    with connect_as(env.daemon.intents, env.alpha) as sock:
        sock.sendall(
            b"".join(
                request_line(f"same-{n}", {"action": "open-url", "target": "alpha", "url": url})
                for n in range(50)
            )
        )
        p = env.wait_pending(url)
        time.sleep(0.2)
        same = [q for q in env.control("pending")["result"]["pending"] if q["params"]["url"] == url]
        assert len(same) == 1
        env.control("verdict", request=p["id"], digest=p["digest"], allow=False)
        replies = read_lines(sock, 50)
    assert len(replies) == 50
    assert {r["error"]["code"] for r in replies} == {"approval_denied"}


def test_grants_once_for_a_duration_always_revoke_and_restart(env):
    url = f"https://grant.example/{uuid.uuid4().hex[:6]}"
    # once: the next identical ask asks again
    sock, _ = env.ask(url)
    with sock:
        p = env.wait_pending(url)
        env.cli("approve", p["id"], user=env.op)
        read_lines(sock, 1)
    sock, _ = env.ask(url)
    with sock:
        p = env.wait_pending(url)
        # for 2 seconds: the next identical ask passes without a prompt
        assert env.cli("approve", "--for", "2s", p["id"], user=env.op).returncode == 0
        read_lines(sock, 1)
    assert (
        call(env.daemon.intents, env.alpha, {"action": "open-url", "target": "alpha", "url": url})[
            "status"
        ]
        == "ok"
    )
    time.sleep(2.2)
    sock, _ = env.ask(url)
    with sock:
        p = env.wait_pending(url)  # expired: asked again
        assert env.cli("approve", "--always", p["id"], user=env.op).returncode == 0
        read_lines(sock, 1)
    listed = env.cli("grants", "list", user=env.op)
    assert url in listed.stdout and "always" in listed.stdout
    gid = next(ln.split()[0] for ln in listed.stdout.splitlines() if url in ln)
    # a restart keeps it
    env.daemon.restart()
    assert (
        call(env.daemon.intents, env.alpha, {"action": "open-url", "target": "alpha", "url": url})[
            "status"
        ]
        == "ok"
    )
    assert env.cli("grants", "revoke", gid, user=env.op).returncode == 0
    sock, _ = env.ask(url)
    with sock:
        p = env.wait_pending(url)  # revoked: asked again
        env.control("verdict", request=p["id"], digest=p["digest"], allow=False)
        read_lines(sock, 1)


def test_grant_is_refused_beyond_what_the_rule_permits(env):
    url = f"https://quorum.example/{uuid.uuid4().hex[:6]}"
    sock, _ = env.ask(url)
    with sock:
        p = env.wait_pending(url)
        out = env.cli("approve", "--always", p["id"], user=env.op)
        assert out.returncode == 1 and "at most once" in out.stdout
        env.control("verdict", request=p["id"], digest=p["digest"], allow=False)
        read_lines(sock, 1)


def test_only_the_telegram_agent_user_may_answer_as_telegram(env):
    url = f"https://tg.example/{uuid.uuid4().hex[:6]}"
    sock, _ = env.ask(url)
    with sock:
        p = env.wait_pending(url)
        out = env.control(
            "verdict",
            user=env.op,
            request=p["id"],
            digest=p["digest"],
            allow=True,
            agent="telegram",
            detail="12345",
        )
        assert out["error"]["code"] == "unauthorized"
        env.control("verdict", request=p["id"], digest=p["digest"], allow=False)
        read_lines(sock, 1)


def test_interactive_cli_approver_defaults_to_deny(env):
    proc = subprocess.Popen(
        [str(rig.CLAWVISOR), "approver", "cli", "--socket", str(env.daemon.control)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        **rig.as_user(env.op),
    )
    try:
        assert "waiting for requests" in proc.stdout.readline()
        url = f"https://prompt.example/{uuid.uuid4().hex[:6]}"
        sock, _ = env.ask(url)
        with sock:
            seen = ""
            while "Allow?" not in seen:
                seen += proc.stdout.read(1)
            assert url in seen
            proc.stdin.write("\n")  # just Enter: the default, which is deny
            proc.stdin.flush()
            assert read_lines(sock, 1)[0]["error"]["code"] == "approval_denied"
        url2 = url + "-2"
        sock, _ = env.ask(url2)
        with sock:
            seen = ""
            while "Allow?" not in seen:
                seen += proc.stdout.read(1)
            proc.stdin.write("y\n")
            proc.stdin.flush()
            assert read_lines(sock, 1)[0]["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


@pytest.mark.reliability("fault", "daemon SIGKILLed mid-ask: denied at restart, no grant")
def test_sigkill_mid_ask_is_denied_at_the_next_start(
    make_group, make_user, make_daemon, journal, tmp_path
):
    group = make_group()
    alpha = make_user()
    daemon = make_daemon(
        {"alpha": alpha}, {"10.toml": POLICY}, settings(group, tmp_path / "unused.jsonl")
    )
    rid = f"killed-{uuid.uuid4().hex[:8]}"
    sock = connect_as(daemon.intents, alpha)
    sock.sendall(
        request_line(
            rid, {"action": "open-url", "target": "alpha", "url": "https://killed.example/"}
        )
    )
    journal.wait_entries(1, CLAWVISOR_INTENT_ID=rid, CLAWVISOR_OUTCOME="offered")
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(10)
    assert rig.is_closed(sock)  # the gateway is not left waiting
    sock.close()
    again = rig.start_daemon(daemon.root)
    try:
        recs = journal.wait_entries(1, CLAWVISOR_INTENT_ID=rid, CLAWVISOR_OUTCOME="unavailable")
        assert recs and "stopped while it was pending" in recs[0]["MESSAGE"]
        assert again.alive()
        assert json.loads((daemon.root / "state" / "pending.json").read_text()) == []
        with connect_as(again.control, None) as c:
            c.sendall(b'{"id":"g","op":"grants"}\n')
            assert read_lines(c, 1)[0]["result"]["grants"] == []  # nobody granted anything
    finally:
        again.stop()


def test_policy_explain_shows_a_grant_that_lets_an_intent_through(env):
    url = f"https://explained.example/{uuid.uuid4().hex[:6]}"
    sock, _ = env.ask(url)
    with sock:
        p = env.wait_pending(url)
        assert env.cli("approve", "--always", p["id"], user=env.op).returncode == 0
        read_lines(sock, 1)

    def explain(intent_url: str) -> str:
        return subprocess.run(
            [
                str(rig.CLAWVISOR),
                "policy",
                "explain",
                "--config-dir",
                str(env.daemon.config_dir),
                "--state-dir",
                str(env.daemon.root / "state"),
                "--source",
                "alpha",
                "--target",
                "alpha",
                "open-url",
                f"url={intent_url}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout

    out = explain(url)
    assert out.splitlines()[0] == "decision: ask (rule policy.d/10.toml:18)"
    assert "lets this exact intent through without asking (until always" in out
    assert "grant" not in explain(f"{url}x").split("\n", 2)[2]
