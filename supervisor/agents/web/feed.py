"""The console's links to the daemons: subscribed as the `web` agent to one control
socket, or to each VM's (`--socket vm1=PATH ...`, `--fleet FILE`), it keeps what is
pending there, by (VM, request id), and fans each change out to the browsers watching
(server-sent events). Each VM is reconnected on its own when its link drops."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import msgspec

from ...wire.common import Reply
from ...wire.control import PendingEvent, PendingView, WithdrawnEvent
from ..fleet_link import Down, Fleet, Up, where
from ..prompt import body, offers_thirty_minutes, title


def shown(p: PendingView, vm: str = "") -> dict[str, Any]:
    """A pending request as the page shows it: the words every agent uses (prompt.py),
    its VM, and the choices its rule allows."""
    return {
        "vm": vm,
        "id": p.id,
        "digest": p.digest,
        "title": where(vm) + title(p),
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
    """What is pending on every VM, kept current from their control sockets."""

    def __init__(self, socket: Path | dict[str, Path]) -> None:
        self.fleet = Fleet(socket, "web", reconnect=True)
        self.pending: dict[tuple[str, str], PendingView] = {}
        #: Each VM's state: None when connected, else why not.
        self.down: dict[str, str | None] = {vm: "connecting" for vm in self.fleet.names}
        self._watchers: set[asyncio.Queue[bytes]] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def first(self) -> str:
        """The VM the Workloads and Policy pages show: the first socket given."""
        return self.fleet.names[0]

    @property
    def connected(self) -> bool:
        return any(why is None for why in self.down.values())

    async def call(self, op: str, /, *, vm: str, **fields: Any) -> Reply:
        """One command to the VM named (ConnectionError when it is not connected)."""
        return await self.fleet.call(op, vm=vm, **fields)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.fleet.close()

    def watch(self) -> asyncio.Queue[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)
        self._watchers.add(queue)
        return queue

    def unwatch(self, queue: asyncio.Queue[bytes]) -> None:
        self._watchers.discard(queue)

    def snapshot(self) -> bytes:
        items = [shown(p, vm) for (vm, _), p in self.pending.items()]
        vms = [{"name": vm, "why": why} for vm, why in self.down.items()]
        return msgspec.json.encode(
            {"type": "snapshot", "pending": items, "up": self.connected, "vms": vms}
        )

    def _push(self, message: dict[str, Any]) -> None:
        data = msgspec.json.encode(message)
        for queue in list(self._watchers):
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:  # a stalled browser is dropped, never waited for
                self._watchers.discard(queue)

    def _forget(self, vm: str) -> None:
        for key in [k for k in self.pending if k[0] == vm]:
            del self.pending[key]

    async def _run(self) -> None:
        await self.fleet.start()
        while (item := await self.fleet.events.get()) is not None:
            vm, event = item
            if isinstance(event, Up):
                self._forget(vm)
                self.pending.update({(vm, p.id): p for p in event.pending})
                self.down[vm] = None
                self._push(msgspec.json.decode(self.snapshot()))
            elif isinstance(event, Down):
                self._forget(vm)
                self.down[vm] = event.why
                self._push({"type": "down", "vm": vm, "why": event.why, "vms": [
                    {"name": n, "why": why} for n, why in self.down.items()]})  # fmt: skip
            elif isinstance(event, PendingEvent):
                self.pending[(vm, event.request.id)] = event.request
                self._push({"type": "pending", "request": shown(event.request, vm)})
            elif isinstance(event, WithdrawnEvent):
                self.pending.pop((vm, event.id), None)
                self._push({"type": "gone", "vm": vm, "id": event.id, "reason": event.reason,
                            "by": event.by})  # fmt: skip
