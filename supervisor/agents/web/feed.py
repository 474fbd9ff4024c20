"""The console's link to the daemon: subscribed as the `web` agent, it keeps what is
pending and fans each change out to the browsers watching (server-sent events)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import msgspec

from ...wire.control import PendingEvent, PendingView, WithdrawnEvent
from ..link import ControlLink
from ..prompt import body, offers_thirty_minutes, title


def shown(p: PendingView) -> dict[str, Any]:
    """A pending request as the page shows it: the words every agent uses (prompt.py),
    and the choices its rule allows."""
    return {
        "id": p.id,
        "digest": p.digest,
        "title": title(p),
        "body": body(p),
        "workload": p.workload,
        "action": p.action,
        "params": p.params,
        "rule": p.rule,
        "deadline": p.deadline,
        "waiting": p.waiting,
        "choices": {
            "once": True,
            "30m": offers_thirty_minutes(p),
            "always": p.grant == "always",
            "all": p.waiting > 1,
        },
    }


class Feed:
    """What is pending, kept current from the control socket; reconnects when it drops."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.pending: dict[str, PendingView] = {}
        self.connected = False
        self.link: ControlLink | None = None
        self._watchers: set[asyncio.Queue[bytes]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.link is not None:
            await self.link.close()

    def watch(self) -> asyncio.Queue[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)
        self._watchers.add(queue)
        return queue

    def unwatch(self, queue: asyncio.Queue[bytes]) -> None:
        self._watchers.discard(queue)

    def snapshot(self) -> bytes:
        items = [shown(p) for p in self.pending.values()]
        return msgspec.json.encode({"type": "snapshot", "pending": items, "up": self.connected})

    def _push(self, message: dict[str, Any]) -> None:
        data = msgspec.json.encode(message)
        for queue in list(self._watchers):
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:  # a stalled browser is dropped, never waited for
                self._watchers.discard(queue)

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except (OSError, ConnectionError) as exc:
                self._down(str(exc))
            await asyncio.sleep(1.0)

    def _down(self, why: str) -> None:
        self.connected = False
        self.pending.clear()
        self._push({"type": "down", "why": why})

    async def _follow(self) -> None:
        self.link = link = await ControlLink.open(self.socket)
        reply = await link.call("subscribe", agent="web")
        if reply.status != "ok" or not isinstance(reply.result, dict):
            raise ConnectionError(reply.error.message if reply.error else "refused")
        views = msgspec.convert(reply.result["pending"], list[PendingView])
        self.pending = {p.id: p for p in views}
        self.connected = True
        self._push(msgspec.json.decode(self.snapshot()))
        while (event := await link.events.get()) is not None:
            if isinstance(event, PendingEvent):
                self.pending[event.request.id] = event.request
                self._push({"type": "pending", "request": shown(event.request)})
            elif isinstance(event, WithdrawnEvent):
                self.pending.pop(event.id, None)
                self._push({"type": "gone", "id": event.id, "reason": event.reason,
                            "by": event.by})  # fmt: skip
        self._down("the daemon closed the connection")
