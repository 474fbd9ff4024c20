"""An asyncio connection to control.sock: commands with replies matched by id, and events."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from pathlib import Path
from typing import Any

import msgspec

from ..wire.common import MAX_LINE, Reply
from ..wire.control import Event

_reply = msgspec.json.Decoder(Reply)
_event = msgspec.json.Decoder(Event)


class _Probe(msgspec.Struct):
    event: str | None = None


_probe = msgspec.json.Decoder(_Probe)


class ControlLink:
    """One control-socket connection; `events` receives pushed events (None when it ends)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._ids = itertools.count(1)
        self.events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> ControlLink:
        """Connect to the control socket at `path`."""
        reader, writer = await asyncio.open_unix_connection(str(Path(path)), limit=4 * MAX_LINE)
        return cls(reader, writer)

    async def call(self, op: str, **fields: Any) -> Reply:
        """Send one command and wait for its reply."""
        rid = f"a{os.getpid()}-{next(self._ids)}"
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        self._writer.write(msgspec.json.encode({"id": rid, "op": op, **fields}) + b"\n")
        await self._writer.drain()
        try:
            return await future
        finally:
            self._waiting.pop(rid, None)

    async def _read(self) -> None:
        try:
            while line := await self._reader.readline():
                if _probe.decode(line).event is not None:
                    await self.events.put(_event.decode(line))
                    continue
                reply = _reply.decode(line)
                future = self._waiting.get(reply.id or "")
                if future is not None and not future.done():
                    future.set_result(reply)
        except (ConnectionError, msgspec.DecodeError, ValueError):
            pass
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError("control socket closed"))
            await self.events.put(None)

    async def close(self) -> None:
        """Close the connection."""
        self._task.cancel()
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
