"""`watch`: a gateway told, on its own connection, when a reload changed what it may do."""

from __future__ import annotations

import json
import subprocess

from tests.helpers import rig
from tests.helpers.rig import connect_as, read_lines, request_line
from tests.helpers.rules import rule


def test_a_watching_connection_gets_one_event_per_reload_and_others_get_none(
    make_user, make_daemon
):
    user = make_user()
    daemon = make_daemon({"w": user}, {"10.toml": rule("status")})
    with connect_as(daemon.intents, user) as watching, connect_as(daemon.intents, user) as other:
        watching.sendall(b'{"id": "w1", "watch": "capabilities"}\n')
        [ok] = read_lines(watching, 1)
        assert ok["status"] == "ok" and ok["result"] == {
            "action": "watch",
            "watching": "capabilities",
        }
        for _ in range(2):
            out = subprocess.run(
                [str(rig.CLAWVISOR), "reload", "--socket", str(daemon.control)],
                capture_output=True,
                check=False,
            )
            assert out.returncode == 0
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
        out = subprocess.run(
            [str(rig.CLAWVISOR), "reload", "--socket", str(daemon.control)],
            capture_output=True,
            check=False,
        )
        assert out.returncode == 0
        assert read_lines(watching, 1) == [{"event": "capabilities_changed"}]
