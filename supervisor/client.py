"""A small synchronous client for the intents and control sockets (stdlib + msgspec only).

Requests may be pipelined; replies are matched by id, whatever order they arrive in.
"""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path
from typing import Any

import msgspec

from .protocol import MAX_LINE, Reply

DEFAULT_INTENTS_SOCKET = "/run/clawvisor/intents.sock"
DEFAULT_CONTROL_SOCKET = "/run/clawvisor/control.sock"

_reply_decoder = msgspec.json.Decoder(Reply)


class ConnectionLost(ConnectionError):
    """The daemon closed the connection before answering."""


class Client:
    """One connection to a clawvisor socket."""

    def __init__(self, path: str | os.PathLike[str], timeout: float | None = 30.0) -> None:
        self.path = str(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(self.path)
        except OSError:
            self._sock.close()
            raise
        self._buf = b""
        self._early: dict[str | None, tuple[Reply, bytes]] = {}
        self._ids = itertools.count(1)
        self._prefix = f"c{os.getpid()}-"

    def next_id(self) -> str:
        """A fresh request id for this connection."""
        return f"{self._prefix}{next(self._ids)}"

    def send_line(self, payload: bytes) -> None:
        """Send one raw line (a newline is added)."""
        self._sock.sendall(payload + b"\n")

    def send_intent(self, intent: dict[str, Any], request_id: str | None = None) -> str:
        """Send an intent without waiting; returns its id."""
        rid = request_id or self.next_id()
        self.send_line(msgspec.json.encode({"id": rid, "intent": intent}))
        return rid

    def send_control(self, op: str, request_id: str | None = None, **fields: Any) -> str:
        """Send a control-socket command without waiting; returns its id."""
        rid = request_id or self.next_id()
        self.send_line(msgspec.json.encode({"id": rid, "op": op, **fields}))
        return rid

    def read_reply(self) -> tuple[Reply, bytes]:
        """The next reply line, decoded, with its raw bytes."""
        while b"\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionLost("clawvisor closed the connection")
            self._buf += chunk
            if len(self._buf) > 16 * MAX_LINE and b"\n" not in self._buf:
                raise ConnectionLost("reply line too long")
        line, _, self._buf = self._buf.partition(b"\n")
        return _reply_decoder.decode(line), line

    def read_line(self) -> bytes:
        """The next line, undecoded (events pushed on a subscription are not replies)."""
        while b"\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionLost("clawvisor closed the connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def wait_for(self, request_id: str) -> tuple[Reply, bytes]:
        """The reply to `request_id`; replies to other ids are kept for later.

        A reply with a null id (the daemon refusing the connection or a frame) is
        returned at once: it answers whatever was outstanding.
        """
        if request_id in self._early:
            return self._early.pop(request_id)
        while True:
            reply, raw = self.read_reply()
            if reply.id == request_id or reply.id is None:
                return reply, raw
            self._early[reply.id] = (reply, raw)

    def call(self, intent: dict[str, Any], request_id: str | None = None) -> tuple[Reply, bytes]:
        """Send an intent and wait for its reply."""
        return self.wait_for(self.send_intent(intent, request_id))

    def control(self, op: str, **fields: Any) -> tuple[Reply, bytes]:
        """Send a control command and wait for its reply."""
        return self.wait_for(self.send_control(op, **fields))

    def close(self) -> None:
        """Close the connection."""
        self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def socket_path_default(kind: str) -> Path:
    """The default socket path for `intents` or `control`."""
    return Path(DEFAULT_INTENTS_SOCKET if kind == "intents" else DEFAULT_CONTROL_SOCKET)
