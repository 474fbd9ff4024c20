"""The approvals broker: an `ask` waits here for a human verdict or its deadline.

Agents that can answer attach to the broker from the control socket; until one gives a
verdict, the request waits, and a request nobody answers in time is denied.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["approved", "denied", "timeout", "unavailable"]


@dataclass(slots=True)
class Pending:
    """One request waiting for a human."""

    id: str
    workload: str
    action: str
    target: str | None
    params: str
    rule: str
    deadline: float
    future: asyncio.Future[Outcome] = field(repr=False)


class Broker:
    """Holds pending asks; resolves each exactly once."""

    def __init__(self) -> None:
        self._pending: dict[str, Pending] = {}
        self._ids = itertools.count(1)
        self._closed = False

    @property
    def pending(self) -> list[Pending]:
        """The requests waiting now, oldest first."""
        return list(self._pending.values())

    async def ask(
        self,
        *,
        workload: str,
        action: str,
        target: str | None,
        params: str,
        rule: str,
        timeout: float,
    ) -> Outcome:
        """Wait for a verdict on one request; `timeout` if none arrives in `timeout` seconds."""
        if self._closed:
            return "unavailable"
        loop = asyncio.get_running_loop()
        pid = f"p{next(self._ids)}"
        pending = Pending(
            id=pid,
            workload=workload,
            action=action,
            target=target,
            params=params,
            rule=rule,
            deadline=time.time() + timeout,
            future=loop.create_future(),
        )
        self._pending[pid] = pending
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), timeout)
        except TimeoutError:
            return "timeout"
        finally:
            self._pending.pop(pid, None)
            if not pending.future.done():
                pending.future.cancel()

    def resolve(self, pending_id: str, outcome: Outcome) -> bool:
        """Give a verdict; False if the request is no longer pending."""
        pending = self._pending.get(pending_id)
        if pending is None or pending.future.done():
            return False
        pending.future.set_result(outcome)
        return True

    def close(self) -> None:
        """Refuse new asks and answer every waiting one as `unavailable`."""
        self._closed = True
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_result("unavailable")
