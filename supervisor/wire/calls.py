"""What both gateway clients share: connecting (patiently, when the daemon is busy),
request and cancel lines, and reading a reply's typed result or its error."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from .errors import ClientTimeout, error_for
from .intents import CancelResult, IntentReply, Result, WatchResult

_encoder: Final = msgspec.json.Encoder()

#: A connect refused with EAGAIN (the listen queue full) is retried, at growing pauses,
#: until the client's own timeout: a busy daemon is not a missing one.
CONNECT_FIRST_PAUSE: Final = 0.001
CONNECT_MAX_PAUSE: Final = 0.05


#: The shared gateway socket's name: beside it, `by-uid/UID.sock` is each workload's own
#: (supervisor/workload_sockets.py), whose listen queue no other workload can fill.
SHARED_INTENTS: Final = "intents.sock"


def own_socket(path: str) -> str | None:
    """The caller's own socket beside the shared intents socket at `path`, if it exists."""
    if os.path.basename(path) != SHARED_INTENTS:
        return None
    own = os.path.join(os.path.dirname(path), "by-uid", f"{os.geteuid()}.sock")
    return own if os.path.exists(own) else None


def connect_unix(path: str, timeout: float | None) -> socket.socket:
    """A connected AF_UNIX stream socket (blocking, with `timeout`); OSError if not.
    For the shared intents socket, the caller's own socket first when it is there."""
    own = own_socket(path)
    if own is not None:
        try:
            return _connect(own, timeout)
        except (FileNotFoundError, ConnectionRefusedError, PermissionError):
            pass  # gone with a reload, or not ours: the shared socket serves everyone
    return _connect(path, timeout)


def _connect(path: str, timeout: float | None) -> socket.socket:
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = CONNECT_FIRST_PAUSE
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            return sock
        except BlockingIOError:
            sock.close()
            if deadline is not None and time.monotonic() + pause > deadline:
                raise ClientTimeout(f"{path} stayed too busy to connect to") from None
            time.sleep(pause)
            pause = min(pause * 2, CONNECT_MAX_PAUSE)
        except OSError:
            sock.close()
            raise


def result_of(reply: IntentReply) -> Result:
    """The reply's typed result, or its error raised as the matching exception."""
    result = reply.result
    ok = reply.status == "ok" and result is not None
    if ok and not isinstance(result, CancelResult | WatchResult):
        return result  # type: ignore[return-value]
    raise error_for(reply)


def cancel_line(request_id: str, target: str) -> bytes:
    """The line that withdraws request `target` (sent with id `request_id`)."""
    return _encoder.encode({"id": request_id, "cancel": target}) + b"\n"


def cancel_state(reply: IntentReply) -> str:
    """What a cancel did: withdrawn, running or unknown (its error raised otherwise)."""
    if isinstance(reply.result, CancelResult):
        return reply.result.state
    raise error_for(reply)


IntentLike = msgspec.Struct | Mapping[str, Any] | str


def encode_request(request_id: str, intent: IntentLike, params: Mapping[str, Any]) -> bytes:
    """One request line (with its newline): an action name plus params, a dict, or a Struct."""
    body: Any
    if isinstance(intent, str):
        body = {"action": intent, **params}
    elif isinstance(intent, Mapping):
        body = {**intent, **params}
    else:
        if params:
            raise TypeError("params go inside the intent Struct")
        body = intent
    return _encoder.encode({"id": request_id, "intent": body}) + b"\n"
