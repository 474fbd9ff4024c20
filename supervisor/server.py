"""The two Unix sockets: accepting, the connections on each, fair turns, drain.

An endpoint accepts connections itself (a connection over its uid's cap is answered and
closed before any transport exists, so a connect flood empties the listen queue at the
cost of a few system calls each), watches every connection for hang-ups on an epoll set
of its own (a connection that is not being read never sees its EOF), gives workloads
turns on the loop, and on shutdown (`drain`) stops reading, lets the work in flight
finish up to a deadline and flushes the replies owed. Each connection is a
`connection.Connection`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import Callable

from .connection import BATCH, Acceptance, Connection, Limits
from .hangups import HangupWatch
from .identity import Peer, peer_credentials
from .listen import ACCEPT_BATCH, FLOOD_REFUSALS, FLOOD_REST
from .turns import Turns


class Endpoint:
    """The listening sockets of one kind (intents: the shared socket and one per
    workload uid) and the connections on them; the per-uid caps span all of them."""

    def __init__(
        self,
        name: str,
        limits: Limits,
        accept: Callable[[Peer, socket.socket], Acceptance],
        on_bad_frame: Callable[[Peer, str | None, str], bytes],
        on_over_cap: Callable[[Peer], bytes],
    ) -> None:
        self.name = name
        self.limits = limits
        self.accept = accept
        self.on_bad_frame = on_bad_frame
        self.on_over_cap = on_over_cap
        self.connections: set[Connection] = set()
        self.per_uid: dict[int, int] = {}
        #: Work whose connection has ended: it goes on to its outcome (kept referenced).
        self.orphans: set[asyncio.Task[bytes]] = set()
        self.draining = False
        #: fd -> listener. Each is served in its own turn, at most `ACCEPT_BATCH` a
        #: wake-up, so a flood queued on one never holds up the others' accepts.
        self._listeners: dict[int, socket.socket] = {}
        #: Accepted, not yet connected as a transport (counted against the caps at once).
        self._accepting: dict[int, int] = {}
        self._connecting: set[asyncio.Task[None]] = set()
        #: Connections refused over their uid's cap at accept, without a transport.
        self.refused_at_accept = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self.hangups: HangupWatch | None = None
        self.turns = Turns(BATCH)

    async def start(self, sock: socket.socket) -> None:
        """Serve connections on an already bound and listening socket (asyncio gets its
        own descriptor of it: stopping to accept never closes the caller's)."""
        self.hangups = HangupWatch()
        self.listen(sock)
        self._schedule_sweep()

    def listen(self, sock: socket.socket) -> int:
        """Also accept on `sock` (a dup of it); the handle to `unlisten` it with."""
        mine = sock.dup()
        mine.setblocking(False)
        fd = mine.fileno()
        self._listeners[fd] = mine
        if not self.draining:
            asyncio.get_running_loop().add_reader(fd, self._accept_ready, fd)
        return fd

    def unlisten(self, fd: int) -> None:
        """Stop accepting on one listener (its connections go on)."""
        listener = self._listeners.pop(fd, None)
        if listener is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(fd)
            listener.close()

    def _accept_ready(self, fd: int) -> None:
        """Accept what waits (up to a batch a wake-up). A connection over its uid's cap is
        answered and closed right here, before any transport exists: a connect flood
        costs the daemon a few system calls per attempt, and the listen queue empties."""
        listener = self._listeners.get(fd)
        if listener is None:
            return
        loop = asyncio.get_running_loop()
        cap = self.limits.max_connections_per_uid
        refused = 0
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: back off, do not spin
                print(f"clawvisor: {self.name}: accept failed: {exc}", file=sys.stderr)
                loop.remove_reader(fd)
                loop.call_later(0.1, self._resume_accepting, fd)
                return
            conn.setblocking(False)
            try:
                peer = peer_credentials(conn)
            except OSError:
                conn.close()
                continue
            held = self.per_uid.get(peer.uid, 0) + self._accepting.get(peer.uid, 0)
            if held >= cap:
                self.refused_at_accept += 1
                refused += 1
                with contextlib.suppress(OSError):
                    conn.send(self.on_over_cap(peer))
                conn.close()
                continue
            self._accepting[peer.uid] = self._accepting.get(peer.uid, 0) + 1
            task = loop.create_task(self._connect(conn, peer.uid))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
        if refused >= FLOOD_REFUSALS:
            # A full batch that was mostly over-cap connects is a flood: this listener
            # rests a moment (its queue holds what comes meanwhile), so the loop goes to
            # everyone else's connections and listeners, not to refusing the flood.
            loop.remove_reader(fd)
            loop.call_later(FLOOD_REST, self._resume_accepting, fd)

    async def _connect(self, conn: socket.socket, uid: int) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: Connection(self), conn)
        except OSError:
            conn.close()
        finally:
            left = self._accepting.get(uid, 1) - 1
            if left > 0:
                self._accepting[uid] = left
            else:
                self._accepting.pop(uid, None)

    def _resume_accepting(self, fd: int) -> None:
        if fd in self._listeners and not self.draining:
            asyncio.get_running_loop().add_reader(fd, self._accept_ready, fd)

    def in_flight(self) -> set[asyncio.Task[bytes]]:
        """Every request being handled, on live connections or orphaned."""
        tasks = set(self.orphans)
        for conn in self.connections:
            tasks |= conn.tasks
        return tasks

    def stop_accepting(self) -> None:
        """Accept no more connections (new ones wait in the kernel's backlog, if any)."""
        for fd in list(self._listeners):
            self.unlisten(fd)

    async def drain(self, deadline: float) -> set[asyncio.Task[bytes]]:
        """Read no more requests; wait (until the monotonic `deadline`) for the work in
        flight; the tasks still running then."""
        self.draining = True
        self.stop_accepting()
        for conn in list(self.connections):
            conn.stop_reading()
        while True:
            tasks = self.in_flight()
            left = deadline - time.monotonic()
            if not tasks or left <= 0:
                return tasks
            await asyncio.wait(tasks, timeout=left)

    async def flush(self, stall: float, deadline: float) -> None:
        """Wait until every connection's owed replies have left (for as long as peers keep
        taking them: at most `stall` seconds without progress, never past the monotonic
        `deadline`), then close."""
        last, moved = -1, time.monotonic()
        # asyncio has no "write buffer empty" event; at shutdown a short poll is fine.
        while (now := time.monotonic()) < deadline:
            unsent = sum(c.unsent() for c in self.connections)
            if not unsent:
                break
            if unsent != last:
                last, moved = unsent, now
            elif now - moved > stall:
                break
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.close()

    def _schedule_sweep(self) -> None:
        period = max(0.05, min(self.limits.idle_timeout, self.limits.frame_timeout) / 4)
        self._sweeper = asyncio.get_running_loop().call_later(period, self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        for conn in list(self.connections):
            conn.check_timeouts(now)
        self._schedule_sweep()

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.stop_accepting()
        for conn in list(self.connections):
            conn.close()
        if self.hangups is not None:
            self.hangups.close()
        await asyncio.sleep(0)  # let the closes run their callbacks
