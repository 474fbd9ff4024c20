"""JournalSender: a busy journald is waited for, a stalled one is skipped for a while."""

from __future__ import annotations

import socket
import time

import pytest

from supervisor.audit.journal import JournalSender, JournalUnavailable


@pytest.fixture
def fake_journal(tmp_path):
    """A real datagram socket that nobody reads: its queue fills and stays full."""
    path = tmp_path / "socket"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    yield path, sock
    sock.close()


def test_absent_journald_is_reported_not_ignored(tmp_path):
    with pytest.raises(JournalUnavailable):
        JournalSender(str(tmp_path / "missing")).send(b"MESSAGE=x\n")


def test_entries_reach_a_listening_socket(fake_journal):
    path, sock = fake_journal
    JournalSender(str(path)).send(b"MESSAGE=hello\n")
    assert sock.recv(100) == b"MESSAGE=hello\n"


def test_full_queue_times_out_then_is_skipped_during_backoff(fake_journal):
    path, _ = fake_journal
    sender = JournalSender(str(path), timeout=0.05, backoff=0.5)
    with pytest.raises(JournalUnavailable):
        for _ in range(100000):  # fill the unread queue until a send has to wait
            sender.send(b"MESSAGE=fill\n")
    # Within the backoff the sender does not wait again: it says journald is stalled.
    with pytest.raises(JournalUnavailable) as info:
        sender.send(b"MESSAGE=again\n")
    assert "stalled" in str(info.value)


def test_a_drained_queue_is_used_again_after_backoff(fake_journal):
    path, sock = fake_journal
    sender = JournalSender(str(path), timeout=0.05, backoff=0.2)
    with pytest.raises(JournalUnavailable):
        for _ in range(100000):
            sender.send(b"MESSAGE=fill\n")
    sock.setblocking(False)
    while True:  # journald catches up
        try:
            sock.recv(100)
        except BlockingIOError:
            break
    time.sleep(0.25)
    sender.send(b"MESSAGE=back\n")
    assert sock.recv(100) == b"MESSAGE=back\n"
