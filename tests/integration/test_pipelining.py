"""Requests on one connection are pipelined and answered by id, possibly out of order."""

from __future__ import annotations

import pytest

from tests.helpers.rig import connect_as, read_lines, request_line
from tests.helpers.rules import rule

POLICY = rule("status") + rule("open-url", "*", "ask", timeout=1.5)


@pytest.fixture(scope="module")
def env(make_user, make_daemon):
    user = make_user()
    return make_daemon({"w": user}, {"10.toml": POLICY}), user


def test_thousand_pipelined_requests_are_all_answered_with_their_ids(env):
    daemon, user = env
    ids = [f"p{i}" for i in range(1000)]
    with connect_as(daemon.intents, user) as sock:
        sock.sendall(b"".join(request_line(i, {"action": "status"}) for i in ids))
        replies = read_lines(sock, 1000, timeout=60)
    assert len(replies) == 1000
    assert sorted(r["id"] for r in replies) == sorted(ids)
    assert all(r["status"] == "ok" and r["result"]["action"] == "status" for r in replies)


def test_a_slow_ask_does_not_hold_up_an_allow_behind_it(env):
    daemon, user = env
    with connect_as(daemon.intents, user) as sock:
        sock.sendall(
            request_line("slow", {"action": "open-url", "url": "https://e.org/"})
            + request_line("fast", {"action": "status"})
        )
        first, second = read_lines(sock, 2, timeout=10)
    assert first["id"] == "fast" and first["status"] == "ok"
    assert second["id"] == "slow" and second["error"]["code"] == "approval_timeout"
