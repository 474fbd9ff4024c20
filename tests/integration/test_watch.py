"""`watch`: a gateway told, on its own connection, when a reload changed what it may do."""

from __future__ import annotations

import json

from tests.helpers import rig
from tests.helpers.rig import connect_as, read_lines, request_line
from tests.helpers.rules import rule


def reload(daemon, policy: str | None = None) -> None:
    if policy is not None:
        (daemon.config_dir / "policy.d" / "10.toml").write_text(policy)
    out = rig.reload(daemon)
    assert out.returncode == 0, out.stderr


def test_a_watching_connection_gets_one_event_per_reload_and_others_get_none(
    make_user, make_daemon
):
    user = make_user()
    daemon = make_daemon({"w": user}, {"10.toml": rule("status", "w")})
    with connect_as(daemon.intents, user) as watching, connect_as(daemon.intents, user) as other:
        watching.sendall(b'{"id": "w1", "watch": "capabilities"}\n')
        [ok] = read_lines(watching, 1)
        assert ok["status"] == "ok" and ok["result"] == {
            "action": "watch",
            "watching": "capabilities",
        }
        for policy in (rule("status", "w") + rule("notify", "w"), rule("status", "w")):
            reload(daemon, policy)
            assert read_lines(watching, 1) == [{"event": "capabilities_changed"}]
        # The connection that did not watch got nothing pushed: its next line is a reply.
        other.sendall(request_line("s1", {"action": "status"}))
        assert read_lines(other, 1)[0]["id"] == "s1"


def test_watching_something_unknown_is_a_bad_request(make_user, make_daemon):
    user = make_user()
    daemon = make_daemon({"w": user}, {"10.toml": rule("status")})
    with connect_as(daemon.intents, user) as sock:
        sock.sendall(json.dumps({"id": "w1", "watch": "policy"}).encode() + b"\n")
        [reply] = read_lines(sock, 1)
    assert reply["status"] == "error" and reply["error"]["code"] == "bad_request"


def test_a_watching_connection_is_not_closed_as_idle(make_user, make_daemon):
    user = make_user()
    settings = '[server]\nsocket_group = "cvt-no-such-group"\nidle_timeout = 1\n'
    daemon = make_daemon({"w": user}, {"10.toml": rule("status")}, settings)
    with connect_as(daemon.intents, user) as watching, connect_as(daemon.intents, user) as idle:
        watching.sendall(b'{"id": "w1", "watch": "capabilities"}\n')
        assert read_lines(watching, 1)[0]["status"] == "ok"
        assert rig.is_closed(idle, timeout=10)  # the idle rule still holds for others
        reload(daemon, rule("status") + rule("notify"))
        assert read_lines(watching, 1) == [{"event": "capabilities_changed"}]


def test_a_reload_that_changes_only_another_workloads_policy_tells_this_one_nothing(
    make_user, make_daemon
):
    a, b = make_user(), make_user()
    mine = rule("status", "a")
    daemon = make_daemon({"a": a, "b": b}, {"10.toml": mine + rule("status", "b")})
    with connect_as(daemon.intents, a) as watching_a, connect_as(daemon.intents, b) as watching_b:
        for sock in (watching_a, watching_b):
            sock.sendall(b'{"id": "w1", "watch": "capabilities"}\n')
            assert read_lines(sock, 1)[0]["status"] == "ok"
        reload(daemon, mine + rule("status", "b") + rule("notify", "b"))
        assert read_lines(watching_b, 1) == [{"event": "capabilities_changed"}]
        # a's capabilities are as they were: its next line is the reply to its next request.
        watching_a.sendall(request_line("s1", {"action": "status"}))
        assert read_lines(watching_a, 1)[0]["id"] == "s1"
