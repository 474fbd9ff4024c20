"""One client connection on either socket: lines in, replies out, with bounded memory.

Lines are taken from the framer a batch at a time, as the endpoint's turns allow; the
connection stops being read while a complete line waits, while its in-flight requests or
its unsent replies are over their caps, so a client that never reads cannot grow the
daemon's memory. Replies go out as they complete, matched to requests by id, so a slow
`ask` never holds up an `allow` behind it.

A client does not control what it started: when its connection ends (closed, reset,
killed, or cut off for a bad frame), the work in flight goes on to its outcome and only
the reply is dropped; the session is told (`on_close`) so that it can withdraw what has
not started. EOF is told apart from a half-close (`socat` at the end of its input) by
POLLHUP, which Linux sets on an AF_UNIX stream socket only when the peer has closed it
entirely. A broken frame is refused only after the complete lines before it are answered.
"""

from __future__ import annotations

import asyncio
import select
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .identity import Peer, peer_credentials
from .wire.common import MAX_LINE
from .wire.framing import LineFramer

if TYPE_CHECKING:
    from .server import Endpoint

Answer = bytes | Coroutine[Any, Any, bytes]
LineHandler = Callable[[bytes], Answer]

#: Lines a connection handles per turn.
BATCH = 32
#: After refusing a peer, how long its further input is read and discarded before the
#: socket closes: closing with unread data would reset the connection and could destroy
#: the refusal before the peer reads it.
_LINGER = 1.0
#: An agent whose unsent events pass this is not reading them; it is disconnected.
_PUSH_LIMIT = 1024 * 1024
_WRITE_HIGH = 256 * 1024
_WRITE_LOW = 64 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-endpoint limits."""

    max_connections_per_uid: int
    max_inflight: int
    idle_timeout: float
    frame_timeout: float


class Acceptance:
    """What an endpoint decides about a new peer: a line handler, or a refusal to send.

    `bind`, instead of `handler`, builds the handler from the connection (for sessions
    that push events); `on_close` runs when the connection ends.
    """

    __slots__ = ("bind", "handler", "on_close", "refusal", "workload")

    def __init__(
        self,
        handler: LineHandler | None = None,
        refusal: bytes | None = None,
        workload: str | None = None,
        bind: Callable[[Connection], LineHandler] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.handler = handler
        self.refusal = refusal
        self.workload = workload
        self.bind = bind
        self.on_close = on_close


class Connection(asyncio.Protocol):
    """One client connection: lines in, replies out, with bounded memory."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.workload: str | None = None
        self.handler: LineHandler | None = None
        #: The lines received and not yet handled (taken one at a time as turns allow).
        self.framer = LineFramer(MAX_LINE)
        self.tasks: set[asyncio.Task[bytes]] = set()
        self.last_activity = time.monotonic()
        #: True while the peer waits for pushed events (a `watch`): not idle, then.
        self.waits_for_events: Callable[[], bool] | None = None
        self.partial_since: float | None = None
        self._write_paused = False
        self._reading_paused = False
        #: Waiting in the endpoint's round-robin for its next batch.
        self._turn_due = False
        self._closed = False
        self._counted = False
        self._eof = False
        self._stopped = False
        self._fd: int | None = None
        #: A bad frame seen: refused once the complete lines before it are answered.
        self._broken: str | None = None
        self._on_close: Callable[[], None] | None = None

    # --- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=_WRITE_HIGH, low=_WRITE_LOW)
        ep = self.endpoint
        sock = transport.get_extra_info("socket")
        self.peer = peer_credentials(sock)
        ep.connections.add(self)
        acceptance = ep.accept(self.peer, sock)
        if acceptance.handler is None and acceptance.bind is None:
            self._refuse(acceptance.refusal or b"")
            return
        if ep.per_uid.get(self.peer.uid, 0) >= ep.limits.max_connections_per_uid:
            # Cheap: one line and a close, no linger (a connect flood is what this is).
            self._refuse(ep.on_over_cap(self.peer), linger=False)
            return
        ep.per_uid[self.peer.uid] = ep.per_uid.get(self.peer.uid, 0) + 1
        self._counted = True
        self.handler = acceptance.bind(self) if acceptance.bind else acceptance.handler
        self.workload = acceptance.workload
        self._on_close = acceptance.on_close
        if ep.hangups is not None:
            self._fd = sock.fileno()
            ep.hangups.watch(self._fd, self)

    @property
    def uid(self) -> int:
        """The peer's uid (-1 before it is known)."""
        return self.peer.uid if self.peer is not None else -1

    def peer_left(self) -> None:
        """The peer has closed its end entirely (from the endpoint's hang-up watch)."""
        if not self._closed:
            self._abandoned()

    def data_received(self, data: bytes) -> None:
        if self._closed or self.handler is None or self._broken is not None:
            return  # refused or closing: input is discarded, never buffered
        self.last_activity = time.monotonic()
        framer = self.framer
        framer.push(data)
        self.partial_since = (self.partial_since or self.last_activity) if framer.partial else None
        if framer.has_line():
            self._pump()
        elif framer.broken is not None:
            self._break(str(framer.broken))

    def eof_received(self) -> bool:
        self._eof = True
        if self._peer_gone():
            self._abandoned()
            return True
        # Half-close (`socat` at the end of its input): keep the socket open until the
        # replies still owed have been written, then close.
        self._close_if_done()
        return True

    def _peer_gone(self) -> bool:
        """True when the peer has closed its end entirely (not just shut down writing)."""
        transport = self.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None or sock.fileno() < 0:
            return True
        poller = select.poll()
        poller.register(sock.fileno(), 0)
        return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0))

    def _abandoned(self) -> None:
        """The peer is gone: nobody will read replies; withdraw, then close."""
        self.framer.clear()
        self.handler = None
        self._notify_closed()
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        ep = self.endpoint
        ep.connections.discard(self)
        if self._fd is not None and ep.hangups is not None:
            ep.hangups.forget(self._fd)
            self._fd = None
        if self._counted and self.peer is not None:
            left = ep.per_uid.get(self.peer.uid, 1) - 1
            if left > 0:
                ep.per_uid[self.peer.uid] = left
            else:
                ep.per_uid.pop(self.peer.uid, None)
            self._counted = False
        # The work in flight is not the client's to stop: it goes on to its outcome.
        for task in self.tasks:
            ep.orphans.add(task)
            task.add_done_callback(ep.orphans.discard)
        self.tasks.clear()
        self.framer.clear()
        self._notify_closed()

    def _notify_closed(self) -> None:
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._pump()

    # --- internals -------------------------------------------------------------------

    def _pump(self) -> None:
        """Handle queued lines: now, when no other workload is waiting for its turn,
        else in the endpoint's next round (one batch per workload per round)."""
        if self.handler is None or self._closed or self._turn_due:
            return
        turns = self.endpoint.turns
        if turns.busy or self.serve(BATCH):
            turns.want(self)

    def serve(self, batch: int) -> bool:
        """Handle up to `batch` queued lines; True when more could be handled now."""
        handler = self.handler
        if handler is None or self._closed:
            return False
        limit = self.endpoint.limits.max_inflight
        n = 0
        framer = self.framer
        while len(self.tasks) < limit and not self._write_paused and n < batch:
            line = framer.next_line()
            if line is None:
                break
            answer = handler(line)
            if isinstance(answer, bytes):
                self._write(answer)
            else:
                task = asyncio.get_running_loop().create_task(answer)
                self.tasks.add(task)
                task.add_done_callback(self._task_done)
            n += 1
        more = framer.has_line() and len(self.tasks) < limit and not self._write_paused
        if framer.broken is not None and self._broken is None and not framer.has_line():
            self._broken = str(framer.broken)  # after the lines before it, refused
        self._update_reading()
        self._close_if_done()
        return more and self.handler is not None and not self._closed

    def _close_if_done(self) -> None:
        if self.framer.has_line() or self.tasks:
            return
        if self._broken is not None and self.handler is not None:
            assert self.peer is not None
            self._refuse(self.endpoint.on_bad_frame(self.peer, self.workload, self._broken))
        elif self._eof:
            self.close()

    def _break(self, message: str) -> None:
        """A bad frame: read nothing more; answer what came before it, then refuse."""
        self._broken = message
        self.partial_since = None
        self._update_reading()
        self._pump()

    def stop_reading(self) -> None:
        """Read no more requests (shutdown); what is queued is still handled."""
        self._stopped = True
        self._update_reading()
        self._pump()

    def unsent(self) -> int:
        """Reply bytes written but not yet taken by the peer's socket."""
        transport = self.transport
        if transport is None or self._closed or transport.is_closing():
            return 0
        return transport.get_write_buffer_size()

    def _task_done(self, task: asyncio.Task[bytes]) -> None:
        self.tasks.discard(task)
        if task.cancelled() or self._closed:
            return
        exc = task.exception()
        if exc is not None:
            # The session guards every intent; reaching here is a bug. It costs nothing
            # else: the connection goes on.
            print(f"clawvisor: internal error handling a request: {exc!r}", file=sys.stderr)
        else:
            self._write(task.result())
        if not self._turn_due:
            self._pump()
        else:
            self._close_if_done()

    def _update_reading(self) -> None:
        if self.transport is None or self._closed:
            return
        should_pause = (
            self.framer.has_line()
            or self._write_paused
            or self._stopped
            or self._broken is not None
            or len(self.tasks) >= self.endpoint.limits.max_inflight
        )
        if should_pause and not self._reading_paused:
            self.transport.pause_reading()
            self._reading_paused = True
        elif not should_pause and self._reading_paused:
            self.transport.resume_reading()
            self._reading_paused = False

    def push(self, data: bytes) -> None:
        """Send an unsolicited line (an event); drop a peer that does not read them."""
        transport = self.transport
        if transport is None or self._closed or transport.is_closing():
            return
        if transport.get_write_buffer_size() > _PUSH_LIMIT:
            self.close()
            return
        transport.write(data)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self._closed:
            self.transport.write(data)

    def _refuse(self, reply: bytes, *, linger: bool = True) -> None:
        """Send a final reply, stop serving, and close (after a short linger, so that the
        peer can read the refusal before the close discards what it sent)."""
        self.handler = None
        self.framer.clear()
        self._notify_closed()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if reply:
            transport.write(reply)
        if not linger:
            transport.close()  # what is written still goes out first
            return
        if transport.can_write_eof():
            transport.write_eof()
        if self._reading_paused:
            transport.resume_reading()
            self._reading_paused = False
        asyncio.get_running_loop().call_later(_LINGER, self.close)

    def check_timeouts(self, now: float) -> None:
        """Close the connection if idle too long, its peer has gone since it half-closed,
        or a line has been arriving too slowly."""
        if self.handler is None or self._closed:
            return  # already refused; its linger timer closes it
        limits = self.endpoint.limits
        if self._eof and self._peer_gone():
            self._abandoned()
        elif self.partial_since is not None and now - self.partial_since > limits.frame_timeout:
            self._break(f"line not completed within {limits.frame_timeout:g} s")
        elif (
            not self.tasks
            and not self.framer.has_line()
            and now - self.last_activity > limits.idle_timeout
            and not (self.waits_for_events is not None and self.waits_for_events())
        ):
            self.close()

    def close(self) -> None:
        """Flush what was written and close."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
