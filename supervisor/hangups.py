"""Hang-ups seen at once: when a peer closes its end of a Unix stream socket entirely.

A connection that is not being read (at its in-flight cap, cut off after a bad frame, or
half-closed) never sees its EOF through the event loop, so each endpoint watches its
connections on an epoll set of its own, whose descriptor is readable in the loop.
Linux sets EPOLLHUP on an AF_UNIX stream socket only when the peer has closed it
entirely, and EPOLLRDHUP on a half-close (`shutdown(SHUT_WR)`) as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from typing import Protocol


class Leaves(Protocol):
    """A connection told when its peer has gone."""

    def peer_left(self) -> None:
        """The peer has closed its end entirely."""
        ...


class HangupWatch:
    """Tells connections, at once, when their peer has closed its end entirely.

    One epoll set (its descriptor readable in the event loop) with each connection's
    socket registered for EPOLLRDHUP only: no readable data ever wakes it. A half-close
    (RDHUP without HUP) re-arms the socket for HUP alone, which epoll always reports.
    """

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._conns: dict[int, Leaves] = {}
        asyncio.get_running_loop().add_reader(self._epoll.fileno(), self._ready)

    def watch(self, fd: int, conn: Leaves) -> None:
        """Report `conn`'s hang-up (its socket is `fd`)."""
        self._epoll.register(fd, select.EPOLLRDHUP)
        self._conns[fd] = conn

    def forget(self, fd: int) -> None:
        """Stop watching `fd` (its connection is gone)."""
        if self._conns.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    def _ready(self) -> None:
        for fd, events in self._epoll.poll(0):
            conn = self._conns.get(fd)
            if conn is None:
                continue
            if events & (select.EPOLLHUP | select.EPOLLERR):
                self.forget(fd)
                conn.peer_left()
            else:  # half-closed: from now on only a full close (HUP) reports
                with contextlib.suppress(OSError):
                    self._epoll.modify(fd, 0)

    def close(self) -> None:
        """Stop watching everything."""
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._epoll.fileno())
        self._epoll.close()
        self._conns.clear()
