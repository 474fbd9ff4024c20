"""The daemon's side of the monitor worker (worker.py): start it, keep it told (workloads,
triggers, whether anyone watches live), take what it sends back (alerts, status, live
events), and start it again if it dies, saying so as a degraded monitor."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..triggers import Alert, Trigger
from . import channel
from . import events as ev
from .channel import WorkerStart, WorkerStatus
from .syscalls import SyscallStatus, WorkloadView

#: Restarts after an unexpected exit wait this long, doubling to the cap.
RESTART_FIRST, RESTART_CAP = 1.0, 30.0

LiveLines = list[tuple[str | None, str, bytes]]


class MonitorWorker:
    """One worker process at a time; every setting is kept here and sent again to a
    restarted one."""

    def __init__(
        self,
        start: WorkerStart,
        fire: Callable[[Alert], None],
        show: Callable[[LiveLines], None],
        publish: Callable[[ev.Event], None],
    ) -> None:
        self.start_args = start
        self.fire, self.show, self.publish = fire, show, publish
        self.status = WorkerStatus(syscalls=SyscallStatus())
        self.restarts = 0
        self.exited = ""
        self._views: dict[int, WorkloadView] = {}
        self._rules: tuple[list[Trigger], dict[str, frozenset[str]]] = ([], {})
        self._viewers = False
        self._keep: list[bytes] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loaded: asyncio.Future[None] | None = None
        self._stopping = False
        self._backoff = RESTART_FIRST

    # --- lifecycle -------------------------------------------------------------------

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the worker; returns once it has loaded (or failed to load) the BPF
        program, so `status` is whole from then on."""
        self._loop = loop
        self._loaded = loop.create_future()
        await self._spawn()
        await self._loaded

    async def _spawn(self) -> None:
        ours, self._proc = _popen_worker()
        reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        self._send("start", self.start_args)
        self._send("views", self._views)
        self._send("rules", self._rules)
        self._send("viewers", self._viewers)
        assert self._loop is not None
        self._reader_task = self._loop.create_task(self._read(reader, self._proc))

    def stop(self) -> None:
        """Ask the worker to stop; returns once it has closed the kept log (or 5 s)."""
        self._stopping = True
        self._flush_keep()
        self._send("stop")
        if self._reader_task is not None:
            self._reader_task.cancel()
        proc, self._proc = self._proc, None
        writer, self._writer = self._writer, None
        if writer is not None:
            _await_close(writer, 5.0)
            writer.close()
        if proc is not None:
            _reap(proc)  # it closed its end once the log was flushed

    # --- settings --------------------------------------------------------------------

    def set_workloads(self, views: Mapping[int, WorkloadView]) -> None:
        self._views = dict(views)
        self._send("views", self._views)

    def set_rules(self, triggers: Iterable[Trigger], tags: Mapping[str, frozenset[str]]) -> None:
        self._rules = (list(triggers), dict(tags))
        self._send("rules", self._rules)

    def set_viewers(self, on: bool) -> None:
        if on != self._viewers:
            self._viewers = on
            self._send("viewers", on)

    def keep(self, line: bytes) -> None:
        """A line for the kept log; sent with the others of this loop turn."""
        if not self._keep and self._loop is not None:
            self._loop.call_soon(self._flush_keep)
        self._keep.append(line)

    def _flush_keep(self) -> None:
        if self._keep:
            lines, self._keep = self._keep, []
            self._send("keep", lines)

    def _send(self, kind: str, payload: Any = None) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(channel.frame(kind, payload))

    # --- from the worker -------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader, proc: subprocess.Popen[bytes]) -> None:
        try:
            await self._serve(reader)
        except Exception as exc:  # a worker that speaks nonsense is a dead worker
            print(f"clawvisor: the monitor worker's channel failed: {exc!r}", file=sys.stderr)
            proc.kill()
        if not self._stopping:
            await self._exited(proc)

    async def _serve(self, reader: asyncio.StreamReader) -> None:
        while (message := await channel.receive(reader)) is not None:
            kind, payload = message
            if kind == "status":
                self.status = payload
                if payload.loaded and self._loaded is not None and not self._loaded.done():
                    self._loaded.set_result(None)
                if payload.loaded:
                    self._backoff = RESTART_FIRST
            elif kind == "alerts":
                for alert in payload:
                    self.fire(alert)
            elif kind == "events":
                self.show(payload)

    async def _exited(self, proc: subprocess.Popen[bytes]) -> None:
        """The worker's channel closed without it being asked to stop: say so at once,
        then start another. (A killed worker's exit takes the kernel seconds, detaching
        its BPF program; the channel closes first and is what tells.)"""
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        rc = proc.poll()
        self.exited = "the monitor worker exited" + (f" ({rc})" if rc is not None else "")
        _reap(proc)
        self.restarts += 1
        self.status = WorkerStatus(
            syscalls=SyscallStatus(state="degraded", detail=f"{self.exited}; restarting")
        )
        if self._loaded is not None and not self._loaded.done():
            self._loaded.set_result(None)
        self.publish(
            ev.MonitorState(ts=time.time(), monitor="bpf", state="degraded", detail=self.exited)
        )
        await asyncio.sleep(self._backoff)
        self._backoff = min(self._backoff * 2, RESTART_CAP)
        if not self._stopping:
            await self._spawn()


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Wait for the worker's exit off the loop: the kernel detaching its BPF program as it
    exits takes seconds that nobody needs to wait for."""
    threading.Thread(target=proc.wait, name="monitor-worker-reap", daemon=True).start()


def _popen_worker() -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """The worker process and our end of its channel (fork and exec take a millisecond
    or two; its imports and the BPF compile happen in it, not here)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with theirs:
        argv = [sys.executable, "-m", "supervisor.monitors.worker"]
        proc = subprocess.Popen(
            [*argv, str(theirs.fileno()), str(os.getpid())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
    return ours, proc


def _await_close(writer: asyncio.StreamWriter, timeout: float) -> None:
    """Block until the worker closes its end of the channel (or `timeout`): a shutdown
    path, off the loop's normal work, on a duplicate of the channel's fd."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with socket.socket(fileno=os.dup(sock.fileno())) as dup:
        dup.settimeout(timeout)
        deadline = time.monotonic() + timeout
        with contextlib.suppress(OSError):
            while time.monotonic() < deadline and dup.recv(1 << 16):
                pass
