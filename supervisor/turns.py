"""Fair shares of the event loop between workloads.

Lines that arrive faster than they are handled wait on their connection; each workload
(uid) with lines waiting gets one batch a round, round-robin, so a flood from one
workload's connections delays another workload's requests by at most one batch of its
own, however many connections the flooder holds.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol


class Turn(Protocol):
    """A connection that can take a turn."""

    _turn_due: bool

    @property
    def uid(self) -> int:
        """Whose turn it is (the peer's uid)."""
        ...

    def serve(self, batch: int) -> bool:
        """Handle up to `batch` lines; True when it could handle more now."""
        ...


class Turns:
    """Round-robin between the workloads (uids) whose connections have lines waiting:
    each gets one batch a round, however many connections it holds, so a workload that
    floods from its sixteen connections gets one share of the loop, not sixteen."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self._ready: dict[int, deque[Turn]] = {}
        self._scheduled = False

    @property
    def busy(self) -> bool:
        """True when some connection is waiting for its turn."""
        return bool(self._ready)

    def want(self, conn: Turn) -> None:
        """Give `conn` a batch in the next round."""
        if conn._turn_due:
            return
        conn._turn_due = True
        uid = conn.uid
        self._ready.setdefault(uid, deque()).append(conn)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._round)

    def _round(self) -> None:
        self._scheduled = False
        for uid in list(self._ready):
            queue = self._ready[uid]
            conn = queue.popleft()
            conn._turn_due = False
            if conn.serve(self.batch):
                conn._turn_due = True
                queue.append(conn)
            if not queue:
                del self._ready[uid]
        if self._ready and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._round)
