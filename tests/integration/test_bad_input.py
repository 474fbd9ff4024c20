"""Hostile and broken clients get a typed error or a clean close; others keep being served."""

from __future__ import annotations

import contextlib
import os
import socket
from typing import NamedTuple

import pytest

from tests.helpers import rig
from tests.helpers.rig import call, connect_as, read_lines, request_line
from tests.helpers.rules import rule

POLICY = rule("status")
SETTINGS = (
    '[server]\nsocket_group = "cvt-no-such-group"\nframe_timeout = 1.0\n'
    "max_connections_per_uid = 6\n"
)


class Env(NamedTuple):
    """The daemon, its workload's user, and a user who is no workload."""

    daemon: rig.Daemon
    user: rig.User
    other: rig.User


@pytest.fixture(scope="module")
def env(make_user, make_daemon):
    user, other = make_user(), make_user()
    daemon = make_daemon({"w": user, "v": other}, {"10.toml": POLICY}, SETTINGS)
    return Env(daemon, user, other)


def assert_still_serving(daemon, user):
    assert daemon.alive(), daemon.stderr()
    reply = call(daemon.intents, user, {"action": "status"}, "alive-check")
    assert reply["status"] == "ok", reply


def send_and_read(daemon, user, payload: bytes, count: int = 1) -> list[dict]:
    with connect_as(daemon.intents, user) as sock:
        sock.sendall(payload)
        return read_lines(sock, count)


def test_random_bytes_get_typed_errors_and_the_connection_survives(env):
    daemon, user, other = env.daemon, env.user, env.other
    junk = os.urandom(4096).replace(b"\n", b"x") + b"\n"
    with connect_as(daemon.intents, user) as sock:
        sock.sendall(junk)
        first = read_lines(sock, 1)[0]
        assert first["error"]["code"] in ("bad_frame", "bad_request")
        assert first["status"] == "error"
        sock.sendall(request_line("after", {"action": "status"}))
        assert read_lines(sock, 1)[0]["id"] == "after"
    assert_still_serving(daemon, other)


def test_invalid_utf8_is_bad_frame(env):
    daemon, user, other = env.daemon, env.user, env.other
    reply = send_and_read(daemon, user, b'{"id":"u8","intent":{"action":"st\xffatus"}}\n')[0]
    assert reply["error"]["code"] == "bad_frame"
    assert "UTF-8" in reply["error"]["message"]
    assert_still_serving(daemon, other)


def test_line_over_64_kib_is_bad_frame_and_closes(env):
    daemon, user, other = env.daemon, env.user, env.other
    line = b'{"id":"big","intent":{"action":"status","pad":"' + b"a" * (70 * 1024) + b'"}}\n'
    with connect_as(daemon.intents, user) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(line)
        replies = read_lines(sock, 2)
        assert [r["error"]["code"] for r in replies] == ["bad_frame"]
        assert rig.is_closed(sock)
    assert_still_serving(daemon, other)


def test_line_of_64_kib_minus_one_is_accepted(env):
    daemon, user = env.daemon, env.user
    body = b'{"id":"edge","intent":{"action":"status"}}'
    line = body + b" " * (64 * 1024 - 1 - len(body))
    assert len(line) == 64 * 1024 - 1
    reply = send_and_read(daemon, user, line + b"\n")[0]
    assert reply["id"] == "edge" and reply["status"] == "ok"


def test_deeply_nested_json_is_bad_frame(env):
    daemon, user, other = env.daemon, env.user, env.other
    depth = 30000
    line = b'{"id":"deep","intent":' + b"[" * depth + b"]" * depth + b"}\n"
    reply = send_and_read(daemon, user, line)[0]
    assert reply["error"]["code"] == "bad_frame"
    assert "deep" in reply["error"]["message"]
    assert_still_serving(daemon, other)


@pytest.mark.parametrize(
    "payload, code",
    [
        (b'{"id": 5, "intent": {"action": "status"}}', "bad_request"),
        (b'{"id": "x", "intent": "status"}', "bad_request"),
        (b'{"id": "x", "intent": {"action": 5}}', "bad_request"),
        (b'{"id": "x"}', "bad_request"),
        (b'{"intent": {"action": "status"}}', "bad_request"),
        (b'{"id": "has space", "intent": {"action": "status"}}', "bad_request"),
        (b"[1, 2, 3]", "bad_request"),
        (b'"status"', "bad_request"),
        (b"null", "bad_request"),
        (b'{"id": "x", "intent": {"action": "open-url", "url": ["a"]}}', "invalid_params"),
        (b'{"id": "x", "intent": {"action": "status", "target": 3}}', "invalid_params"),
        (b"{not json", "bad_frame"),
    ],
)
def test_wrong_shapes_and_types_get_the_right_code(env, payload, code):
    daemon, user = env.daemon, env.user
    reply = send_and_read(daemon, user, payload + b"\n")[0]
    assert reply["error"]["code"] == code, reply


def test_reply_echoes_the_id_when_it_is_usable(env):
    daemon, user = env.daemon, env.user
    reply = send_and_read(daemon, user, b'{"id": "keep-me", "intent": {"action": 1}}\n')[0]
    assert reply["id"] == "keep-me"


def test_connection_closed_mid_line_leaves_the_daemon_serving(env):
    daemon, user, other = env.daemon, env.user, env.other
    for _ in range(20):
        sock = connect_as(daemon.intents, user)
        sock.sendall(b'{"id":"half","intent":{"act')
        sock.close()
    assert_still_serving(daemon, other)


def test_stalled_client_does_not_delay_others_and_is_cut_off(env):
    daemon, user, other = env.daemon, env.user, env.other
    stalled = connect_as(daemon.intents, user)
    try:
        stalled.sendall(b'{"id":"slow","intent":{"action":"sta')
        assert_still_serving(daemon, other)
        replies = read_lines(stalled, 1, timeout=10)
        assert replies and replies[0]["error"]["code"] == "bad_frame"
        assert "within" in replies[0]["error"]["message"]
        assert rig.is_closed(stalled)
    finally:
        stalled.close()


def test_flooding_client_that_never_reads_does_not_block_others(env):
    daemon, user, other = env.daemon, env.user, env.other
    flood = connect_as(daemon.intents, user)
    flood.setblocking(False)
    line = request_line("f", {"action": "status"})
    sent = 0
    try:
        # Write until the kernel pushes back: the daemon has stopped reading from us.
        for _ in range(200000):
            try:
                sent += flood.send(line * 64)
            except BlockingIOError:
                break
        assert sent > 0
        assert_still_serving(daemon, other)
        assert_still_serving(daemon, other)
    finally:
        flood.close()
    assert_still_serving(daemon, other)


def test_connection_cap_per_uid_refuses_the_next_one(env):
    daemon, user, other = env.daemon, env.user, env.other
    held = [connect_as(daemon.intents, user) for _ in range(6)]
    try:
        for s in held:  # make sure each is accepted before testing the next
            s.sendall(request_line("h", {"action": "status"}))
            assert read_lines(s, 1)[0]["status"] == "ok"
        with connect_as(daemon.intents, user) as extra:
            reply = read_lines(extra, 1)[0]
            assert reply["error"]["code"] == "rate_limited"
        assert_still_serving(daemon, other)
    finally:
        for s in held:
            s.close()


def test_idle_connection_is_closed(make_user, make_daemon):
    user = make_user()
    daemon = make_daemon(
        {"w": user},
        {"10.toml": POLICY},
        '[server]\nsocket_group = "cvt-no-such-group"\nidle_timeout = 0.5\n',
    )
    with connect_as(daemon.intents, user) as sock:
        assert rig.is_closed(sock, timeout=10)


def test_half_closed_client_still_gets_its_replies(env):
    daemon, user = env.daemon, env.user
    with connect_as(daemon.intents, user) as sock:
        sock.sendall(b"".join(request_line(f"h{i}", {"action": "status"}) for i in range(5)))
        sock.shutdown(socket.SHUT_WR)
        replies = read_lines(sock, 6)
    assert [r["id"] for r in replies] == [f"h{i}" for i in range(5)]
