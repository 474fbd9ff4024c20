"""A journald sender that reports failure instead of hiding it.

libsystemd's sd_journal_sendv (and so systemd-python's journal.send) returns success
when journald's socket does not exist, which would drop audit records silently. This
speaks journald's native protocol itself, so every failure is an exception the auditor
answers with its fallback file.

A busy journald is not a failed one: when its datagram queue is full the send waits
(at most `timeout` seconds), which slows the daemon to the pace of its audit trail
instead of splitting the trail. A send that times out marks journald as stalled, and
records go straight to the fallback for `backoff` seconds before journald is tried
again, so a frozen journald costs one timeout per interval, not one per record.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

JOURNAL_SOCKET = "/run/systemd/journal/socket"
#: The journal namespace the trail lives in (LogNamespace= in clawvisor.service), so that
#: neither the system's logs nor clawvisor's own output can rotate it away.
NAMESPACE = "clawvisor"


def socket_path(namespace: str | None) -> str:
    """Where a namespace's journald takes native records ("" or None: the system's)."""
    return f"/run/systemd/journal.{namespace}/socket" if namespace else JOURNAL_SOCKET


def reachable(path: str) -> bool:
    """True when a journald listens at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


_namespace = NAMESPACE


def use_namespace(namespace: str | None) -> None:
    """The trail's namespace for this process ("" or None: only the system journal); the
    daemon sets it from its config, the tools from --namespace."""
    global _namespace
    _namespace = namespace or ""


def readers(directory: Path | None = None) -> list[Any]:
    """systemd journal Readers on the trail: the journal files in `directory` if given,
    else the trail's namespace and the system journal (where a daemon without its
    namespace's journald writes, loudly), both: a record is wherever it was written."""
    from systemd import journal

    if directory is not None:
        return [journal.Reader(path=str(directory))]
    out = [journal.Reader(namespace=_namespace)] if _namespace else []
    out.append(journal.Reader())
    return out


class JournalUnavailable(OSError):
    """journald did not take the record."""


def field_bytes(key: bytes, value: str) -> bytes:
    """One field in the native protocol; multi-line values use the length-prefixed form."""
    data = value.encode("utf-8", "replace")
    if b"\n" in data:
        return key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return key + b"=" + data + b"\n"


def encode_fields(fields: Iterable[tuple[str, str]]) -> bytes:
    """Serialise (key, value) fields as one journal entry."""
    return b"".join(field_bytes(k.encode("ascii"), v) for k, v in fields)


class JournalSender:
    """One connected datagram socket to journald, re-opened after a failure."""

    def __init__(
        self, path: str = JOURNAL_SOCKET, *, timeout: float = 0.05, backoff: float = 1.0
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.backoff = backoff
        self._sock: socket.socket | None = None
        self._poll: select.poll | None = None
        self._stalled_until = 0.0

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # Non-blocking, and poll only when journald's queue is full: a socket timeout
        # would make CPython poll before every send.
        sock.setblocking(False)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self._poll = select.poll()
        self._poll.register(sock, select.POLLOUT)
        return sock

    def _send_waiting(self, sock: socket.socket, payload: bytes) -> None:
        try:
            sock.send(payload)
            return
        except BlockingIOError:
            pass
        assert self._poll is not None
        if not self._poll.poll(self.timeout * 1000):
            raise TimeoutError
        sock.send(payload)

    def send(self, payload: bytes) -> None:
        """Send one entry; raise JournalUnavailable if journald did not take it."""
        if self._stalled_until and time.monotonic() < self._stalled_until:
            raise JournalUnavailable(0, "journald stalled; retrying shortly")
        self._stalled_until = 0.0
        try:
            if self._sock is None:
                self._sock = self._connect()
            self._send_waiting(self._sock, payload)
        except (TimeoutError, BlockingIOError):
            self._stalled_until = time.monotonic() + self.backoff
            raise JournalUnavailable(0, f"journald did not drain within {self.timeout} s") from None
        except OSError as exc:
            self.close()
            raise JournalUnavailable(exc.errno, exc.strerror or str(exc)) from None

    def close(self) -> None:
        """Drop the socket; the next send reconnects."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._poll = None
