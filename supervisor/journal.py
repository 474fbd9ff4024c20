"""A journald sender that reports failure instead of hiding it.

libsystemd's sd_journal_sendv (and so systemd-python's journal.send) returns success
when journald's socket does not exist, which would drop audit records silently. This
speaks journald's native protocol itself on a non-blocking datagram socket, so every
failure (no journald, journald not reading, a full buffer) is an exception the auditor
answers with its fallback file.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable

JOURNAL_SOCKET = "/run/systemd/journal/socket"


class JournalUnavailable(OSError):
    """journald did not take the record."""


def encode_fields(fields: Iterable[tuple[str, str]]) -> bytes:
    """Serialise fields in the native protocol (binary-safe form for multi-line values)."""
    out = bytearray()
    for key, value in fields:
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode("ascii") + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode("ascii") + b"=" + data + b"\n"
    return bytes(out)


class JournalSender:
    """One connected datagram socket to journald, re-opened after a failure."""

    def __init__(self, path: str = JOURNAL_SOCKET) -> None:
        self.path = path
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        return sock

    def send(self, payload: bytes) -> None:
        """Send one entry; raise JournalUnavailable if journald did not take it."""
        try:
            if self._sock is None:
                self._sock = self._connect()
            self._sock.send(payload)
        except OSError as exc:
            self.close()
            raise JournalUnavailable(exc.errno, exc.strerror or str(exc)) from None

    def close(self) -> None:
        """Drop the socket; the next send reconnects."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
