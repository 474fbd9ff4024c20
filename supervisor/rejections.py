"""Input refused before it became an intent: undecodable lines, broken frames, peers that
may not connect or are over their connection cap. Each gets a reply line saying why; the
trail gets a `rejected` record for each, up to a budget per uid, and beyond it one
record per interval that counts the rest (codes, first and last id). So what one workload
can make the daemon write by sending garbage is bounded whatever it sends, and cannot
rotate the trail away. Records of real intents are never counted in: they are not here.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .audit import WARNING, Auditor, AuditRecord
from .identity import Peer
from .wire.common import ErrorCode, encode_reply, error_reply

if TYPE_CHECKING:
    from .config import AuditSettings


@dataclass(slots=True)
class _Budget:
    """One uid's token bucket, and what was counted instead of recorded since the last
    aggregate record."""

    tokens: float
    last: float
    workload: str | None = None
    counted: Counter[str] = field(default_factory=Counter)
    first_id: str | None = None
    last_id: str | None = None
    since: float = 0.0


class Rejections:
    """Audits and answers what the daemon refuses at its front door, within budget."""

    def __init__(
        self,
        trail: Auditor,
        *,
        rate: float = 10.0,
        burst: int = 100,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        what: str = "rejected input",
    ) -> None:
        self.trail = trail
        #: What is counted, in the aggregate record's words.
        self.what = what
        self.rate = rate
        self.burst = burst
        self.interval = interval
        self._clock = clock
        self._budgets: dict[int, _Budget] = {}
        self._flush: asyncio.TimerHandle | None = None
        #: Rejections counted into aggregate records instead of one record each.
        self.aggregated = 0

    def rejected(
        self,
        peer: Peer,
        workload: str | None,
        request_id: str | None,
        code: ErrorCode,
        message: str,
    ) -> bytes:
        """Record one refused line or connection (within budget); its reply."""
        if self._take(peer.uid, workload):
            self.trail.note(
                AuditRecord(
                    kind="rejected",
                    priority=WARNING,
                    intent_id=request_id,
                    workload=workload,
                    uid=peer.uid,
                    pid=peer.pid,
                    outcome=code,
                    message=f"rejected input from uid {peer.uid} ({workload or 'unknown'}): "
                    f"{code}: {message}"[:1024],
                )
            )
        else:
            self._count(peer.uid, workload, request_id, code)
        return encode_reply(error_reply(request_id, code, message))

    def counts_instead(
        self, peer: Peer, workload: str | None, request_id: str | None, code: str
    ) -> bool:
        """True when this one is over its uid's budget: counted into the next aggregate
        record instead of recorded on its own (the caller writes nothing for it)."""
        if self._take(peer.uid, workload):
            return False
        self._count(peer.uid, workload, request_id, code)
        return True

    def connection(self, peer: Peer, code: ErrorCode, message: str) -> bytes:
        """Record and answer a connection refused before any request (unknown uid, caps)."""
        return self.rejected(peer, None, None, code, message)

    def frame(self, peer: Peer, workload: str | None, message: str) -> bytes:
        """Record and answer a line that breaks framing (too long, never completed)."""
        return self.rejected(peer, workload, None, "bad_frame", message)

    # --- the budget ------------------------------------------------------------------

    def _take(self, uid: int, workload: str | None) -> bool:
        now = self._clock()
        b = self._budgets.get(uid)
        if b is None:
            b = self._budgets[uid] = _Budget(tokens=float(self.burst), last=now)
        b.workload = workload or b.workload
        b.tokens = min(float(self.burst), b.tokens + (now - b.last) * self.rate)
        b.last = now
        if b.tokens >= 1.0 and not b.counted:
            b.tokens -= 1.0
            return True
        return False

    def _count(self, uid: int, workload: str | None, request_id: str | None, code: str) -> None:
        b = self._budgets[uid]
        if not b.counted:
            b.since = time.time()
        b.counted[code] += 1
        self.aggregated += 1
        if request_id is not None:
            b.first_id = b.first_id or request_id
            b.last_id = request_id
        if self._flush is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a tool, a test): count only
                return
            self._flush = loop.call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Write one aggregate record per uid whose rejections were counted."""
        self._flush = None
        for uid, b in list(self._budgets.items()):
            if b.counted:
                n = sum(b.counted.values())
                codes = ", ".join(f"{c} {k}" for c, k in b.counted.most_common())
                ids = f"; ids {b.first_id} .. {b.last_id}" if b.first_id else ""
                self.trail.note(
                    AuditRecord(
                        kind="rejected",
                        priority=WARNING,
                        workload=b.workload,
                        uid=uid,
                        outcome="aggregated",
                        detail=codes,
                        message=f"{self.what} from uid {uid} ({b.workload or 'unknown'}): "
                        f"{n} more over its budget of {self.rate:g}/s in "
                        f"{time.time() - b.since:.1f} s, counted here ({codes}){ids}"[:1024],
                    )
                )
                b.counted.clear()
                b.first_id = b.last_id = None
            elif b.tokens >= self.burst and self._clock() - b.last > self.interval:
                del self._budgets[uid]  # idle and full: forget it (bounded memory)


def counted_refusals(trail: Auditor, audit: AuditSettings) -> Callable[[Any, str], bool]:
    """The pipeline's budget of refused intents per workload (`[audit] denied_rate`):
    (intent, code) -> True when that refusal is counted instead of recorded."""
    denials = Rejections(
        trail,
        rate=audit.denied_rate,
        burst=audit.denied_burst,
        interval=audit.rejected_interval,
        what="refused intents",
    )

    def count(it: Any, code: str) -> bool:
        caller = it.caller
        return denials.counts_instead(caller.peer, caller.account.workload, it.request_id, code)

    return count
