"""Messages between the daemon and its monitor worker: (kind, payload) pairs, each a
length-prefixed pickle, over a socketpair the daemon made for that one child.

Pickle, because what crosses is the daemon's own compiled data (triggers, workload views,
typed events and alerts) between two processes of the same program and the same uid,
over a connection no third process can reach; never anything a workload sent.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from dataclasses import dataclass
from typing import Any

from .syscalls import SyscallStatus

LENGTH = struct.Struct("!I")
#: A message larger than this is a bug on the other side, not data.
MAX_MESSAGE = 256 << 20

Message = tuple[str, Any]


def frame(kind: str, payload: Any = None) -> bytes:
    """One message, ready to write."""
    body = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
    return LENGTH.pack(len(body)) + body


async def receive(reader: asyncio.StreamReader) -> Message | None:
    """The next message, or None once the other side is gone."""
    try:
        head = await reader.readexactly(LENGTH.size)
        (size,) = LENGTH.unpack(head)
        if size > MAX_MESSAGE:
            raise ValueError(f"a {size}-byte message from the monitor channel")
        body = await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    kind, payload = pickle.loads(body)  # noqa: S301 (our own child; see above)
    return str(kind), payload


@dataclass(frozen=True)
class WorkerStart:
    """What the worker runs: the first message the daemon sends."""

    bpf: bool
    rate: int
    burst: int
    ringbuf_pages: int
    home_root: str
    log_dir: str | None
    log_max_bytes: int
    log_max_age: float


@dataclass
class WorkerStatus:
    """The worker's figures, as the daemon shows them."""

    syscalls: SyscallStatus
    loaded: bool = False
    log_written: int = 0
    log_dropped: int = 0
    log_error: str = ""
