"""Loads the daemon must hold: honest gateways keep being served, memory stays bounded,
and every request has its audit record."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid

import pytest

from bench.footprint import rss_mib
from tests.helpers import rig
from tests.helpers.honest import Honest
from tests.helpers.rig import connect_as, read_lines, request_line
from tests.helpers.rules import rule

POLICY = rule("status")


def settings(**server: object) -> str:
    lines = ['socket_group = "cvt-no-such-group"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in server.items()]
    return "[server]\n" + "\n".join(lines) + "\n"


pytestmark = pytest.mark.usefixtures("enough_descriptors")


def lost_records(daemon: rig.Daemon, ids: list[str], timeout: float = 60) -> int:
    """Requests among `ids` without a record in journald (waiting for journald to catch up)."""
    deadline = time.monotonic() + timeout
    while True:
        missing = len(set(ids) - set(rig.chain_field(daemon.chain, "CLAWVISOR_INTENT_ID")))
        if missing == 0 or time.monotonic() > deadline:
            return missing
        time.sleep(0.5)


@pytest.mark.reliability("load", "1,000 concurrent connections")
def test_a_thousand_concurrent_connections_are_all_served(
    users, make_daemon, journal, profile, row
):
    user, other = users
    daemon = make_daemon(
        {"w": user, "v": other},
        {"10.toml": POLICY},
        settings(max_connections_per_uid=profile.connections + 16),
    )
    prefix = f"k{uuid.uuid4().hex[:6]}-"
    ids = [f"{prefix}{i}" for i in range(profile.connections)]
    with Honest(daemon.intents, other) as honest:
        socks = [connect_as(daemon.intents, user, timeout=30) for _ in ids]
        try:
            for sock, rid in zip(socks, ids, strict=True):
                sock.sendall(request_line(rid, {"action": "status"}))
            replies = [read_lines(sock, 1, timeout=30) for sock in socks]
        finally:
            for sock in socks:
                sock.close()
        row.p99_us = honest.check()
    assert [r[0]["id"] for r in replies] == ids
    assert all(r[0]["status"] == "ok" for r in replies)
    row.requests = len(ids)
    row.lost = lost_records(daemon, ids)
    assert row.lost == 0


@pytest.mark.reliability("load", "100 slow clients, a byte a second")
def test_slow_clients_are_cut_off_and_honest_ones_are_served(
    users, make_daemon, journal, profile, row
):
    user, other = users
    frame_timeout = min(10.0, profile.slow_seconds / 2)
    daemon = make_daemon(
        {"w": user, "v": other},
        {"10.toml": POLICY},
        settings(max_connections_per_uid=profile.slow_clients + 16, frame_timeout=frame_timeout),
    )
    line = request_line("slow", {"action": "status"})
    socks = [connect_as(daemon.intents, user) for _ in range(profile.slow_clients)]
    cut = 0
    try:
        with Honest(daemon.intents, other) as honest:
            deadline = time.monotonic() + profile.slow_seconds
            i = 0
            while time.monotonic() < deadline:
                for sock in socks:
                    with contextlib.suppress(OSError):
                        sock.send(line[i % len(line) : i % len(line) + 1])
                i += 1
                time.sleep(1.0)
            row.p99_us = honest.check()
        for sock in socks:
            replies = read_lines(sock, 1, timeout=frame_timeout + 5)
            if replies and replies[0].get("error", {}).get("code") == "bad_frame":
                cut += 1
    finally:
        for sock in socks:
            sock.close()
    row.note(f"{cut} cut off after {frame_timeout:g} s")
    assert cut == profile.slow_clients
    assert daemon.alive()


@pytest.mark.reliability("load", "clients that never read their replies")
def test_clients_that_never_read_do_not_hold_up_others(users, make_daemon, journal, row):
    user, other = users
    daemon = make_daemon({"w": user, "v": other}, {"10.toml": POLICY}, settings())
    line = request_line("f", {"action": "status"}) * 256
    floods = [connect_as(daemon.intents, user) for _ in range(8)]
    before = rss_mib(daemon.proc.pid)
    try:
        with Honest(daemon.intents, other) as honest:
            pushed = 0
            for sock in floods:
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    for _ in range(100_000):
                        pushed += sock.send(line)
            time.sleep(2)
            row.p99_us = honest.check()
        after = rss_mib(daemon.proc.pid)
    finally:
        for sock in floods:
            sock.close()
    row.note(f"{pushed // 1024:,} KiB pushed, RSS {before:.0f} -> {after:.0f} MiB")
    assert after - before < 20, "replies nobody reads must not pile up in memory"
    assert daemon.alive()


@pytest.mark.reliability("load", "lines of 64 KiB minus one byte")
def test_lines_at_the_frame_limit_are_each_answered(users, make_daemon, journal, row):
    user, other = users
    # Each of these is refused (an unknown key): one record each, so the per-uid budget
    # for refusals (see the rejection-flood row) is lifted here.
    daemon = make_daemon(
        {"w": user, "v": other},
        {"10.toml": POLICY},
        settings() + "[audit]\nrejected_burst = 1000\n",
    )
    prefix = f"b{uuid.uuid4().hex[:6]}-"

    def big(i: int) -> bytes:
        head = json.dumps({"id": f"{prefix}{i}", "intent": {"action": "status"}, "pad": ""})
        body = head[:-2] + "x" * (65535 - len(head) - 1) + '"}'
        assert len(body) == 65535 - 1
        return body.encode() + b"\n"  # 64 KiB - 1 with its newline

    ids = [f"{prefix}{i}" for i in range(200)]
    answered: list[dict] = []

    def client(sock: socket.socket, part: list[int]) -> None:
        with sock:
            for i in part:
                sock.sendall(big(i))
                answered.extend(read_lines(sock, 1, timeout=30))

    # Connected here: connect_as switches the whole process's euid, so not from threads.
    socks = [connect_as(daemon.intents, user, timeout=30) for _ in range(8)]
    with Honest(daemon.intents, other) as honest:
        threads = [
            threading.Thread(target=client, args=(socks[k], list(range(k, 200, 8))))
            for k in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        row.p99_us = honest.check()
    assert sorted(r["id"] for r in answered) == sorted(ids)
    # An unknown top-level key is a typed error, and the connection carried on.
    assert {r["error"]["code"] for r in answered} == {"bad_request"}
    row.requests = len(ids)
    row.lost = lost_records(daemon, ids)
    assert row.lost == 0


@pytest.mark.reliability("load", "a per-uid connection cap reached")
def test_the_connection_cap_refuses_one_uid_and_serves_the_others(users, make_daemon, journal, row):
    user, other = users
    daemon = make_daemon(
        {"w": user, "v": other}, {"10.toml": POLICY}, settings(max_connections_per_uid=32)
    )
    held = [connect_as(daemon.intents, user) for _ in range(32)]
    try:
        for sock in held:
            sock.sendall(request_line("h", {"action": "status"}))
            assert read_lines(sock, 1)[0]["status"] == "ok"
        with Honest(daemon.intents, other) as honest:
            refused = 0
            for _ in range(50):
                with connect_as(daemon.intents, user) as extra:
                    reply = read_lines(extra, 1)
                    refused += bool(reply) and reply[0]["error"]["code"] == "rate_limited"
            row.p99_us = honest.check()
    finally:
        for sock in held:
            sock.close()
    row.note(f"{refused} connections over the cap refused")
    assert refused == 50


@pytest.mark.reliability("load", "RSS after many requests vs after the first thousand")
def test_memory_stays_bounded_over_many_requests(users, make_daemon, journal, profile, row):
    user, other = users
    daemon = make_daemon({"w": user, "v": other}, {"10.toml": POLICY}, settings())
    prefix = f"m{uuid.uuid4().hex[:6]}-"
    clients, batch = 8, 500

    def drive(start: int, count: int) -> list[str]:
        ids = [f"{prefix}{n}" for n in range(start, start + count)]

        def one(sock: socket.socket, part: list[str]) -> None:
            with sock:
                for k in range(0, len(part), batch):
                    chunk = part[k : k + batch]
                    sock.sendall(b"".join(request_line(i, {"action": "status"}) for i in chunk))
                    assert len(read_lines(sock, len(chunk), timeout=60)) == len(chunk)

        socks = [connect_as(daemon.intents, user, timeout=60) for _ in range(clients)]
        threads = [
            threading.Thread(target=one, args=(socks[c], ids[c::clients])) for c in range(clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return ids

    ids = drive(0, 1000)
    first = rss_mib(daemon.proc.pid)
    with Honest(daemon.intents, other) as honest:
        ids += drive(1000, profile.memory_requests - 1000)
        row.p99_us = honest.check()
    last = rss_mib(daemon.proc.pid)
    row.requests = len(ids)
    row.note(f"RSS {first:.1f} -> {last:.1f} MiB")
    assert last - first <= 20
    row.lost = lost_records(daemon, ids, timeout=120)
    assert row.lost == 0
