"""The console's view of the monitors: a `monitor` subscription on the control socket,
the last events of each workload (in the words `clawvisor monitor` prints) and its
intents' decisions and outcomes (from the trail), and a count of each per 10-second
bucket for its timeline, pushed to the browsers in batches. With several VMs each is
followed on its own and a workload is named with its VM (`vm1/alpha`), its lines too
(`[vm1] ...`): two VMs' workloads of the same name stay apart."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import msgspec

from ...wire.common import MAX_LINE
from ..fleet_link import where
from ..monitor_view import render

KEEP = 500  # events kept per workload
BUCKET = 10.0  # seconds per timeline bar
SPAN = 3600.0  # the timeline's length
FLUSH = 0.25  # how often browsers get what came in


class Activity:
    """What each workload did lately; follows the daemon, reconnecting when it drops."""

    def __init__(self, socket: Path | dict[str, Path]) -> None:
        self.sockets = {"": socket} if isinstance(socket, Path) else dict(socket)
        self.recent: dict[str, collections.deque[dict[str, Any]]] = {}
        self.buckets: dict[str, dict[int, list[int]]] = {}
        self._batch: list[dict[str, Any]] = []
        self._watchers: set[asyncio.Queue[bytes]] = set()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(vm, path)) for vm, path in self.sockets.items()]
        self._tasks.append(loop.create_task(self._flush()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def watch(self) -> asyncio.Queue[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=200)
        self._watchers.add(queue)
        return queue

    def unwatch(self, queue: asyncio.Queue[bytes]) -> None:
        self._watchers.discard(queue)

    def snapshot(self) -> bytes:
        return msgspec.json.encode(
            {
                "type": "snapshot",
                "recent": {w: list(d) for w, d in self.recent.items()},
                "timeline": self.timeline(),
            }
        )

    def timeline(self) -> dict[str, list[list[float]]]:
        """Per workload: [bucket start, events, alerts, intents] for the last SPAN seconds."""
        first = int((time.time() - SPAN) // BUCKET)
        return {
            w: [[b * BUCKET, *c] for b, c in sorted(bs.items()) if b >= first]
            for w, bs in self.buckets.items()
        }

    def add(self, obj: dict[str, Any], vm: str = "") -> None:
        """One `monitor` line from `vm`'s daemon (an event, or an alert when it names a
        trigger)."""
        workload = str(obj.get("workload") or "-")
        if vm:
            workload = f"{vm}/{workload}"
        alert = "trigger" in obj
        intent = obj.get("kind") == "intent"  # a decision or outcome from the trail
        ts = float(obj.get("ts") or time.time())
        text = str(obj.get("message") or "") if intent else render(obj, "text", False)
        text = where(vm) + text
        item = {
            "ts": ts,
            "vm": vm,
            "workload": workload,
            "kind": str(obj.get("kind", "")),
            "severity": str(obj.get("severity", "info")),
            "alert": alert,
            "text": text,
        }
        self.recent.setdefault(workload, collections.deque(maxlen=KEEP)).append(item)
        counts = self.buckets.setdefault(workload, {}).setdefault(int(ts // BUCKET), [0, 0, 0])
        counts[2 if intent else 1 if alert else 0] += 1
        self._batch.append(item)

    async def _flush(self) -> None:
        while True:
            await asyncio.sleep(FLUSH)
            if not self._batch:
                continue
            batch, self._batch = self._batch, []
            data = msgspec.json.encode(
                {"type": "events", "events": batch, "timeline": self.timeline()}
            )
            for queue in list(self._watchers):
                try:
                    queue.put_nowait(data)
                except asyncio.QueueFull:
                    self._watchers.discard(queue)
            self._prune()

    def _prune(self) -> None:
        first = int((time.time() - SPAN) // BUCKET)
        for bs in self.buckets.values():
            for b in [b for b in bs if b < first]:
                del bs[b]

    async def _run(self, vm: str, socket: Path) -> None:
        while True:
            with contextlib.suppress(OSError, ConnectionError, ValueError):
                await self._follow(vm, socket)
            await asyncio.sleep(1.0)

    async def _follow(self, vm: str, socket: Path) -> None:
        reader, writer = await asyncio.open_unix_connection(str(socket), limit=4 * MAX_LINE)
        try:
            writer.write(b'{"id":"activity","op":"monitor"}\n')
            await writer.drain()
            while line := await reader.readline():
                obj = json.loads(line)
                if isinstance(obj, dict) and obj.get("event") == "monitor":
                    self.add(obj, vm)
        finally:
            writer.close()
