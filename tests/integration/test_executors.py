"""Each executor through the real daemon: exactly the argv, user and environment expected."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import quote_plus

import pytest

from tests.helpers import rig
from tests.helpers.rig import call, connect_as, read_lines
from tests.helpers.rules import rule

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
RECORDER = HELPERS / "recorder.py"
RESOLVER = HELPERS / "resolver_stub.py"
PY = "/usr/bin/python3"
OPS_SCRIPT = """#!/usr/bin/python3
import json, os, sys
with open({out!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv, "uid": os.getuid(), "cwd": os.getcwd(),
                         "env": dict(os.environ)}}) + "\\n")
print("ops ran")
"""

ALLOW_ALPHA = rule("*", "alpha")


class Env:
    def __init__(self, root: Path, daemon, alpha, beta):
        self.root, self.daemon, self.alpha, self.beta = root, daemon, alpha, beta

    def records(self, name: str) -> list[dict]:
        path = self.root / "rec" / name
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def do(self, intent: dict) -> dict:
        return call(self.daemon.intents, self.alpha, intent)


def rec(root: Path, name: str, *template: str) -> str:
    return json.dumps([PY, str(RECORDER), str(root / "rec" / name), *template])


@pytest.fixture(scope="module")
def env(make_user, make_daemon):
    root = rig.shared_tmpdir("clawvisor-exec-")
    (root / "rec").mkdir(mode=0o1777)
    (root / "rec").chmod(0o1777)
    home = root / "home-alpha"
    alpha = make_user(home=str(home))
    beta = make_user()
    home.mkdir()
    os.chown(home, alpha.uid, alpha.gid)
    ops = home / "ops"
    ops.mkdir(mode=0o700)
    script = ops / "record-ops"
    script.write_text(OPS_SCRIPT.format(out=str(root / "rec" / "ops.jsonl")))
    script.chmod(0o755)
    (root / "dns.json").write_text(json.dumps({"private.example": ["10.0.0.5"]}))
    settings = f"""
[server]
socket_group = "cvt-no-such-group"
[executors.search]
argv = {rec(root, "search.jsonl", "{url}")}
url_template = "https://search.example/?q={{query}}"
[executors.install-app]
argv = {rec(root, "apt.jsonl", "install", "-y", "--no-install-recommends", "--", "{package}")}
[executors.egress-allow]
argv = {
        json.dumps(
            [PY, str(RESOLVER), str(root / "dns.json"), str(root / "rec" / "dns.jsonl"), "{host}"]
        )
    }
[executors.workload-start]
argv = {rec(root, "unit.jsonl", "start", "clawvisor-workload@{target}.service")}
[executors.workload-stop]
argv = {rec(root, "unit.jsonl", "stop", "clawvisor-workload@{target}.service")}
[executors.workload-restart]
argv = {rec(root, "unit.jsonl", "restart", "clawvisor-workload@{target}.service")}
[executors.notify]
rate = "3/hour"
"""
    daemon = make_daemon({"alpha": alpha, "beta": beta}, {"10.toml": ALLOW_ALPHA}, settings)
    yield Env(root, daemon, alpha, beta)
    shutil.rmtree(root, ignore_errors=True)


def test_search_url_encodes_the_query_into_one_argument_run_as_the_target(env):
    query = "cats & dogs; rm -rf / $(id)"
    reply = env.do({"action": "search", "query": query})
    assert reply["status"] == "ok", reply
    [r] = env.records("search.jsonl")[-1:]
    expected = f"https://search.example/?q={quote_plus(query)}"
    assert r["args"] == [expected] and reply["result"]["url"] == expected
    assert (r["uid"], r["gid"]) == (env.alpha.uid, env.alpha.gid)
    assert r["cwd"] == str(env.root / "home-alpha")
    assert set(r["env"]) == {"PATH", "HOME", "USER", "LOGNAME", "LANG"}


def test_install_app_runs_apt_get_as_root_with_the_package_after_double_dash(env):
    reply = env.do({"action": "install-app", "package": "vim=2:9.0.1378-2"})
    assert reply["status"] == "ok", reply
    r = env.records("apt.jsonl")[-1]
    assert r["args"] == ["install", "-y", "--no-install-recommends", "--", "vim=2:9.0.1378-2"]
    assert (r["uid"], r["gid"]) == (0, 0)
    assert r["env"]["DEBIAN_FRONTEND"] == "noninteractive"
    assert r["umask"] == 0o077 and r["stdin_is_devnull"] and r["pgid_is_pid"]


@pytest.mark.parametrize("verb", ["start", "stop", "restart"])
def test_workload_control_runs_systemctl_on_the_targets_unit(env, verb):
    reply = env.do({"action": f"workload-{verb}", "target": "beta"})
    assert reply["status"] == "ok", reply
    r = env.records("unit.jsonl")[-1]
    assert r["args"] == [verb, "clawvisor-workload@beta.service"] and r["uid"] == 0


def test_run_ops_runs_the_named_script_as_root_with_exactly_its_args(env):
    reply = env.do({"action": "run-ops", "script": "record-ops", "args": ["-rf", "a b", "--x"]})
    assert reply["status"] == "ok", reply
    assert reply["result"]["output"] == "ops ran\n"
    r = json.loads((env.root / "rec" / "ops.jsonl").read_text().splitlines()[-1])
    # No `--` of ours: the script's $1 is the first argument asked for.
    assert r["argv"] == [
        str(env.root / "home-alpha" / "ops" / "record-ops"),
        "-rf",
        "a b",
        "--x",
    ]
    assert r["uid"] == 0


def test_a_run_ops_ask_for_a_script_that_cannot_run_is_refused_before_anyone_is_asked(
    env, make_daemon, journal
):
    ask = ALLOW_ALPHA.replace('"*"\nsource', '"run-ops"\nsource').replace('"allow"', '"ask"')
    daemon = make_daemon({"alpha": env.alpha}, {"10.toml": ask})
    ops = env.root / "home-alpha" / "ops"
    theirs = ops / "theirs-too"
    theirs.write_text("#!/bin/sh\ntrue\n")
    os.chown(theirs, env.alpha.uid, env.alpha.gid)
    theirs.chmod(0o755)
    with connect_as(daemon.control, None) as agent:
        agent.sendall(b'{"id":"s","op":"subscribe","agent":"cli"}\n')
        assert read_lines(agent, 1)[0]["result"]["pending"] == []
        for n, (script, why) in enumerate(
            (("missing", "no ops script"), ("theirs-too", "not owned by root"))
        ):
            rid = f"ro-{n}-{os.getpid()}"
            reply = call(daemon.intents, env.alpha, {"action": "run-ops", "script": script}, rid)
            assert reply["error"]["code"] == "executor_failed", reply
            message = reply["error"]["message"]
            # The workload learns that it cannot run, not what is in a root-only directory.
            assert "nobody was asked" in message and why not in message and "/ops" not in message
            [rec] = journal.wait_entries(1, CLAWVISOR_INTENT_ID=rid, CLAWVISOR_FINAL="1")
            assert why in rec["CLAWVISOR_DETAIL"] and rec["CLAWVISOR_DECISION"] == "deny"

        # A script that can run is put before the human as before.
        with connect_as(daemon.intents, env.alpha) as gw:
            gw.sendall(rig.request_line("ok1", {"action": "run-ops", "script": "record-ops"}))
            [event] = read_lines(agent, 1)
            assert (
                event["event"] == "pending" and event["request"]["params"]["script"] == "record-ops"
            )


def test_run_ops_refuses_scripts_others_could_change(env):
    ops = env.root / "home-alpha" / "ops"
    loose = ops / "loose"
    loose.write_text("#!/bin/sh\ntrue\n")
    loose.chmod(0o777)
    (ops / "linked").symlink_to("/usr/bin/id")
    theirs = ops / "theirs"
    theirs.write_text("#!/bin/sh\ntrue\n")
    theirs.chmod(0o755)
    os.chown(theirs, env.alpha.uid, env.alpha.gid)
    cases = {
        "loose": "writable by others",
        "linked": "not a regular file",
        "theirs": "not owned by root",
        "missing": "no ops script",
    }
    for script, why in cases.items():
        reply = env.do({"action": "run-ops", "script": script})
        assert reply["error"]["code"] == "executor_failed", (script, reply)
        assert why in reply["error"]["message"]


def test_egress_allow_resolves_as_the_target_and_refuses_private_answers(env):
    reply = env.do({"action": "egress-allow", "host": "private.example", "ttl": 60})
    assert reply["error"]["code"] == "executor_failed"
    assert "10.0.0.5 is not a public address" in reply["error"]["message"]
    r = env.records("dns.jsonl")[-1]
    assert r["argv"] == ["private.example"] and r["uid"] == env.alpha.uid


def test_notify_reaches_subscribed_agents_and_is_rate_limited(env):
    with connect_as(env.daemon.control, None) as agent:
        agent.sendall(b'{"id":"s","op":"subscribe","agent":"cli"}\n')
        read_lines(agent, 1)
        replies = [env.do({"action": "notify", "message": f"hello \u202e{n}"}) for n in range(4)]
        events = read_lines(agent, 3)
    assert [r["status"] for r in replies] == ["ok", "ok", "ok", "denied"]
    assert replies[0]["result"]["delivered"] == 1
    assert replies[3]["error"]["code"] == "rate_limited" and replies[3]["decision"] == "deny"
    assert events[0] == {"event": "notice", "workload": "alpha", "message": "hello \\u202e0"}


def test_status_counts_grants(env):
    with connect_as(env.daemon.control, None) as c:  # the operator's status counts them
        c.sendall(b'{"id":"s","op":"status"}\n')
        assert read_lines(c, 1)[0]["result"]["grants"] == 0


@pytest.mark.parametrize(
    "intent, field, why",
    [
        ({"action": "search", "query": ""}, "query", "length"),
        ({"action": "search", "query": "a\nb"}, "query", "control"),
        ({"action": "search", "query": "x" * 513}, "query", "length"),
        ({"action": "install-app", "package": "-oAPT::Foo=1"}, "package", "Debian package"),
        ({"action": "install-app", "package": "Vim"}, "package", "Debian package"),
        ({"action": "install-app", "package": "vim; id"}, "package", "Debian package"),
        ({"action": "install-app", "package": "vim=-1"}, "package", "Debian package"),
        ({"action": "egress-allow", "host": "10.0.0.1"}, "host", "numeric"),
        ({"action": "egress-allow", "host": "[::1]"}, "host", "label"),
        ({"action": "egress-allow", "host": "a.example", "ttl": 86401}, "ttl", "<= 86400"),
        ({"action": "egress-allow", "host": "a.example", "port": 0}, "port", ">= 1"),
        ({"action": "sync-out", "paths": ["../etc/passwd"]}, "paths", ".."),
        ({"action": "sync-out", "paths": ["/etc/passwd"]}, "paths", "absolute"),
        ({"action": "sync-out", "paths": []}, "paths", "length"),
        ({"action": "sync-out", "paths": ["a", "a"]}, "paths", "twice"),
        ({"action": "run-ops", "script": "../bin/sh"}, "script", "regex"),
        ({"action": "run-ops", "script": "ok", "args": ["a\x00b"]}, "args", "control"),
        ({"action": "run-ops", "script": "ok", "args": ["x"] * 17}, "args", "length"),
        ({"action": "notify", "message": "x" * 501}, "message", "length"),
        ({"action": "workload-start", "target": "no such"}, "target", "regex"),
    ],
)
def test_invalid_params_name_the_field_and_why(env, intent, field, why):
    reply = env.do(intent)
    assert reply["error"]["code"] == "invalid_params", reply
    message = reply["error"]["message"]
    assert field in message and why in message, message
