"""`clawvisor policy check | explain | replay` as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

from tests.helpers import rig
from tests.helpers.rig import call
from tests.helpers.rules import groups, policy_test, rule

POLICY = (
    "\n"
    + groups(read=["status"])
    + rule("@read", "alpha")
    + rule(
        "open-url",
        "*",
        "ask",
        "@self",
        approvers=["telegram"],
        params={"url": '{ domain = "*.example.org" }'},
    )
    + rule("status", "alpha", "deny")
)


def run(*argv):
    return subprocess.run([str(rig.CLAWVISOR), *argv], capture_output=True, text=True, timeout=60)


@pytest.fixture
def config(tmp_path):
    etc = tmp_path / "etc"
    (etc / "policy.d").mkdir(parents=True)
    (etc / "workloads.toml").write_text('[workloads.alpha]\nuser = "root"\n')
    (etc / "clawvisor.toml").write_text('[approvals]\nagents = ["cli"]\n')
    (etc / "policy.d" / "10.toml").write_text(POLICY)
    for p in (etc, etc / "policy.d", etc / "policy.d" / "10.toml"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return etc


def test_check_prints_warnings_and_exits_zero(config):
    out = run("policy", "check", "--config-dir", str(config))
    assert out.returncode == 0, out.stdout
    assert "policy.d/10.toml:20: warning: never decides: rule policy.d/10.toml:5" in out.stdout
    assert "policy.d/10.toml:11: warning: ask with no approver able to answer" in out.stdout
    assert "3 rules in 1 files" in out.stdout and "0 errors" in out.stdout


def test_check_exits_one_on_errors_with_position(config):
    (config / "policy.d" / "20.policy").write_text("status * alpha * allow user=root\n")
    out = run("policy", "check", "--config-dir", str(config))
    assert out.returncode == 1
    assert "policy.d/20.policy:1:24: error: user= is not supported" in out.stdout


def test_check_runs_the_policy_tests(config):
    (config / "policy.d" / "tests").mkdir()
    (config / "policy.d" / "tests" / "t.toml").write_text(policy_test("alpha", "status", "deny"))
    out = run("policy", "check", "--config-dir", str(config))
    assert out.returncode == 1
    assert "policy.d/tests/t.toml:1: error: policy test failed" in out.stdout
    assert "0/1 tests passed" in out.stdout


def test_check_warns_on_policy_files_others_can_write(config):
    target = config / "policy.d" / "10.toml"
    target.chmod(0o666)
    out = run("policy", "check", "--config-dir", str(config))
    assert f"{target}: warning: writable by someone other than root" in out.stdout
    target.chmod(0o644)
    os.setxattr(
        target,
        "system.posix_acl_access",
        __import__("supervisor.posix_acl", fromlist=["encode_acl"]).encode_acl(0o644, {4242: 6}),
    )
    out = run("policy", "check", "--config-dir", str(config))
    assert "lets its group, an ACL entry or others write" in out.stdout
    os.chown(config / "policy.d", 4242, 0)
    out = run("policy", "check", "--config-dir", str(config))
    assert "owned by uid 4242" in out.stdout


def explain(config, *params: str, target: str | None = None):
    """`policy explain` of open-url from alpha (to `target`, or none)."""
    where = ["--target", target] if target else []
    return run(
        "policy",
        "explain",
        "--config-dir",
        str(config),
        "--source",
        "alpha",
        *where,
        "open-url",
        *params,
    )


def test_explain_shows_the_rule_and_why_earlier_ones_did_not_match(config):
    out = explain(config, "url=https://www.EXAMPLE.org/x", target="alpha")
    assert out.returncode == 0, out.stdout
    lines = out.stdout.splitlines()
    assert lines[0] == "decision: ask (rule policy.d/10.toml:11)"
    assert any("asks telegram" in ln for ln in lines)
    assert any(ln.startswith("-> policy.d/10.toml:11") for ln in lines)
    assert "(1 rule for other actions not considered)" in out.stdout


def test_explain_reports_each_failed_condition(config):
    out = explain(config, "url=https://evil.org/", target="beta")
    assert out.stdout.splitlines()[0] == "decision: deny (rule default)"
    assert "target '@self' does not cover 'beta'" in out.stdout
    # no target: open-url runs on its sender, which @self covers; the URL is what fails
    out = explain(config, "url=https://evil.org/")
    assert "param url = 'https://evil.org/' fails: url host is one of" in out.stdout


def test_explain_refuses_invalid_params_as_the_daemon_would(config):
    out = explain(config, "url=ftp://x")
    assert out.returncode == 2 and "invalid_params" in out.stdout


def test_replay_lists_decisions_a_new_policy_would_change(
    make_user, make_daemon, journal, tmp_path
):
    user = make_user()
    daemon = make_daemon({"alpha": user}, {"10.toml": POLICY})
    tag = uuid.uuid4().hex[:8]
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))
    call(daemon.intents, user, {"action": "status"}, f"st-{tag}")
    call(
        daemon.intents,
        user,
        {"action": "open-url", "target": "alpha", "url": "https://other.org/"},
        f"ou-{tag}",
    )
    journal.wait_entries(1, CLAWVISOR_INTENT_ID=f"ou-{tag}")
    new = tmp_path / "new.d"
    new.mkdir()
    (new / "10.toml").write_text(rule("*", "*", "deny"))
    out = run(
        "policy",
        "replay",
        "--policy-dir",
        str(new),
        "--config-dir",
        str(daemon.config_dir),
        "--log-dir",
        str(daemon.root / "log"),
        "--since",
        since,
    )
    assert out.returncode == 0, out.stdout
    changed = [ln for ln in out.stdout.splitlines() if tag in ln]
    assert len(changed) == 1
    assert f"[st-{tag}]: allow (policy.d/10.toml:5) -> deny (new.d/10.toml:1)" in changed[0]


def test_replay_decides_on_the_target_the_intent_named_not_where_it_ran(
    make_user, make_daemon, journal, tmp_path
):
    """`open-url * alpha @default allow default_target=research` ran an untargeted intent
    on research; replaying it under the same policy must change nothing (the old replay
    re-decided it as if it had named research, and reported a deny that never happened)."""
    alpha, research = make_user(), make_user()
    line = "open-url  *  alpha  @default  allow default_target=research\n"
    daemon = make_daemon(
        {"alpha": alpha, "research": research},
        {"10.policy": line},
        '[server]\nsocket_group = "cvt-no-such-group"\n'
        '[executors.open-url]\nargv = ["/bin/true", "{url}"]\n',
    )
    tag = uuid.uuid4().hex[:8]
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))
    reply = call(daemon.intents, alpha, {"action": "open-url", "url": "https://a.org/"}, f"d-{tag}")
    assert reply["status"] == "ok"
    recs = journal.wait_entries(2, CLAWVISOR_INTENT_ID=f"d-{tag}")
    assert {r.get("CLAWVISOR_RUNS_ON") for r in recs} == {"research"}
    assert not any("CLAWVISOR_TARGET" in r for r in recs)
    out = run(
        "policy",
        "replay",
        "--policy-dir",
        str(daemon.config_dir / "policy.d"),
        "--config-dir",
        str(daemon.config_dir),
        "--log-dir",
        str(daemon.root / "log"),
        "--since",
        since,
    )
    assert out.returncode == 0, out.stdout
    # (Other tests' records in the same journal may change; this intent's may not.)
    assert not [ln for ln in out.stdout.splitlines() if tag in ln], out.stdout


def test_replay_reads_the_fallback_file(tmp_path, config):
    log = tmp_path / "log"
    log.mkdir()
    rec = {
        "message_id": "x",
        "record": {
            "kind": "decision",
            "priority": 6,
            "message": "m",
            "intent_id": "fb1",
            "workload": "alpha",
            "action": "open-url",
            "target": "alpha",
            "decision": "deny",
            "rule": "default",
            "params": json.dumps({"url": "https://a.example.org/"}),
            "outcome": "policy_denied",
            "seq": 1,
            "ts": time.time(),
        },
    }
    (log / "audit.jsonl").write_text(json.dumps(rec) + "\nnot json\n")
    out = run(
        "policy",
        "replay",
        "--policy-dir",
        str(config / "policy.d"),
        "--config-dir",
        str(config),
        "--log-dir",
        str(log),
        "--no-journal",
    )
    assert "[fb1]: deny (default) -> ask (policy.d/10.toml:11)" in out.stdout
    assert "1 recorded decisions, 1 would change" in out.stdout


def test_policy_diff_reports_what_a_new_policy_newly_allows_and_exits_1(config, tmp_path):
    new = tmp_path / "new.d"
    new.mkdir()
    (new / "10.toml").write_text(POLICY + rule("search", "alpha"))
    out = run("policy", "diff", "--config-dir", str(config), str(new))
    assert out.returncode == 1, out.stdout
    assert "search" in out.stdout
    same = run("policy", "diff", "--config-dir", str(config), str(config / "policy.d"))
    assert same.returncode == 0, same.stdout
    js = run("policy", "diff", "--json", "--config-dir", str(config), str(new))
    assert js.returncode == 1 and json.loads(js.stdout)["cells"]


def test_reload_diff_shows_the_change_against_the_policy_in_force(make_user, make_daemon):
    user = make_user()
    daemon = make_daemon({"alpha": user}, {"10.toml": POLICY})
    (daemon.config_dir / "policy.d" / "20.toml").write_text(rule("search", "alpha"))
    out = run(
        "reload",
        "--diff",
        "--socket",
        str(daemon.control),
        "--config-dir",
        str(daemon.config_dir),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "search" in out.stdout and "reloaded:" in out.stdout
    again = rig.call(daemon.intents, user, {"action": "search", "query": "x"})
    assert again["decision"] == "allow"
