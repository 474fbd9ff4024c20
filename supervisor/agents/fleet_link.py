"""One agent, many VMs: a control-socket link per VM, subscribed as the agent, their
events merged into one stream, each tagged with its VM's name; a call goes to the VM it
names, and only there.

A single socket given without a name is the VM named "" (prompts then name no VM).
Besides the daemon's events the stream says `Up` (subscribed: what waits there now) and
`Down` (that VM's link is gone, and why). Without `reconnect` a VM that went down stays
down, and the stream ends (None) once every VM has gone: the agents say so, naming the
VM, and keep serving the others. With `reconnect` (the web console) each VM is tried
again every `RETRY` seconds and the stream never ends.

Request ids are the daemon's own (`p-` and 10 hex digits); anything else a VM sends as
a request is dropped here: an agent keys what it shows by (VM, id) and never takes an
id seen on one VM for a request of another.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from executors.base import whole

from ..wire.common import Reply
from ..wire.control import Agent, Event, PendingEvent, PendingView
from .link import ControlLink

#: Seconds between attempts to reach a VM again (with `reconnect`).
RETRY = 1.0
_REQUEST_ID = re.compile(whole(r"p-[0-9a-f]{10}"))


@dataclass(frozen=True)
class Up:
    """The VM's daemon took the subscription: what waits there now."""

    pending: list[PendingView]


@dataclass(frozen=True)
class Down:
    """The VM's link is gone (or never came up), and why."""

    why: str


Happening = Event | Up | Down


async def alongside(main: Awaitable[None], side: Coroutine[Any, Any, None]) -> None:
    """Await `main` with `side` running beside it; `side` is cancelled when `main` ends."""
    task = asyncio.ensure_future(side)
    try:
        await main
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def where(vm: str) -> str:
    """How a line names its VM: `[vm1] `, or nothing for an unnamed single socket."""
    return f"[{vm}] " if vm else ""


class Fleet:
    """The links to every VM's daemon; `events` yields (vm, what happened)."""

    def __init__(
        self, sockets: Path | dict[str, Path], agent: Agent, *, reconnect: bool = False
    ) -> None:
        self.sockets = {"": sockets} if isinstance(sockets, Path) else dict(sockets)
        self.agent: Agent = agent
        self.reconnect = reconnect
        self.links: dict[str, ControlLink] = {}
        self.events: asyncio.Queue[tuple[str, Happening] | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._running = 0

    @property
    def names(self) -> list[str]:
        """Every VM, in the order given."""
        return list(self.sockets)

    @property
    def up(self) -> list[str]:
        """The VMs connected now, in the order given."""
        return [vm for vm in self.sockets if vm in self.links]

    def following(self) -> str:
        """` on vm1, vm2` (nothing for an unnamed single socket), for a start line."""
        named = [vm for vm in self.sockets if vm]
        return f" on {', '.join(named)}" if named else ""

    def lost(self, vm: str, why: str) -> str:
        """What an agent says when a VM's link is gone."""
        rest = [n for n in self.up if n != vm]
        name = f"{vm}: " if vm else ""
        if self.reconnect:
            return f"{name}{why}; trying again"
        if not vm:
            return why
        return f"{name}{why}; " + (f"still serving {', '.join(rest)}" if rest else "no VM left")

    async def start(self) -> None:
        """Connect to every VM and subscribe; returns once each was tried once (its `Up`
        or `Down` is then in `events`)."""
        loop = asyncio.get_running_loop()
        tried = []
        for vm, path in self.sockets.items():
            first: asyncio.Future[None] = loop.create_future()
            tried.append(first)
            self._tasks.append(loop.create_task(self._follow(vm, path, first)))
        self._running = len(self._tasks)
        if not self._tasks:
            self.events.put_nowait(None)
        await asyncio.gather(*tried)

    async def call(self, op: str, /, *, vm: str, **fields: Any) -> Reply:
        """One command to the VM named `vm` (ConnectionError when it is not connected)."""
        link = self.links.get(vm)
        if link is None:
            raise ConnectionError(f"{vm or 'the daemon'} is not connected")
        return await link.call(op, **fields)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for link in list(self.links.values()):
            await link.close()
        self.links.clear()

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _follow(self, vm: str, path: Path, first: asyncio.Future[None]) -> None:
        try:
            while True:
                why = await self._once(vm, path, first)
                await self.events.put((vm, Down(why)))
                if not first.done():
                    first.set_result(None)
                if not self.reconnect:
                    return
                await asyncio.sleep(RETRY)
        finally:
            if not first.done():
                first.set_result(None)
            self._running -= 1
            if self._running == 0 and not self.reconnect:
                self.events.put_nowait(None)

    async def _once(self, vm: str, path: Path, first: asyncio.Future[None]) -> str:
        """Follow one connection to `vm` until it ends; why it ended."""
        try:
            link = await ControlLink.open(path)
        except OSError as exc:
            return f"cannot reach the daemon at {path}: {exc.strerror or exc}"
        try:
            reply = await link.call("subscribe", agent=self.agent)
            if reply.status != "ok" or not isinstance(reply.result, dict):
                return reply.error.message if reply.error else "subscription refused"
            try:
                pending = msgspec.convert(reply.result.get("pending", []), list[PendingView])
            except msgspec.ValidationError as exc:
                return f"a subscription reply not understood: {exc}"
            self.links[vm] = link
            await self.events.put((vm, Up([p for p in pending if _REQUEST_ID.match(p.id)])))
            if not first.done():
                first.set_result(None)
            while (event := await link.events.get()) is not None:
                if isinstance(event, PendingEvent) and not _REQUEST_ID.match(event.request.id):
                    continue  # not a request id the daemon makes: nothing to show or answer
                await self.events.put((vm, event))
            return "the daemon closed the connection"
        except ConnectionError:
            return "the daemon closed the connection"
        finally:
            if self.links.get(vm) is link:
                del self.links[vm]
            await link.close()
