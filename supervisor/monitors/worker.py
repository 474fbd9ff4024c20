"""The monitor worker: the BPF syscall monitor, the triggers on its events and the kept
event log, in a process of the daemon's own (`python -m supervisor.monitors.worker FD PID`).

A busy workload makes tens of thousands of syscall events a second, and decoding each is
Python work; on the daemon's event loop that work delayed every decision (a `status`
took 0.8 s at 100,000 events/s). Here it has a core and an interpreter of its own: the
daemon gets only what fired (alerts), a status five times a second, and, while someone
watches live, the events themselves. The daemon's other monitors (overlay, counters,
proxy) send their low-rate events and the alert lines here to be kept, so the log has
one writer.

The worker dies with the daemon (PR_SET_PDEATHSIG) and stops when its channel closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import msgspec

from ..triggers import Alert, TriggerEngine
from . import channel
from . import events as ev
from .bus import Bus
from .channel import WorkerStart, WorkerStatus
from .eventlog import EventLog
from .syscalls import SyscallMonitor, SyscallStatus

PR_SET_PDEATHSIG = 1
#: How often the worker tells the daemon how it stands.
STATUS_INTERVAL = 0.2
#: Live viewers' events are dropped (and counted) while this much waits for the daemon:
#: a stalled daemon must not grow the worker without bound. Alerts are never dropped.
MAX_UNSENT = 64 << 20


class Worker:
    """The child's side of the channel."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.bus = Bus()
        self.engine = TriggerEngine([], {}, self._fired)
        self.syscalls: SyscallMonitor | None = None
        self.log: EventLog | None = None
        self.loaded = False
        self.viewers = False
        self.viewer_dropped = 0
        self._alerts: list[Alert] = []
        self._lines: list[tuple[str | None, str, bytes]] = []
        self._flushing = False
        self._encoder = msgspec.json.Encoder()
        self._writer: asyncio.StreamWriter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        reader, self._writer = await asyncio.open_unix_connection(sock=self.sock)
        self.bus.subscribe(self.engine.on_event)
        status = self._loop.call_later(STATUS_INTERVAL, self._status_tick)
        try:
            while (message := await channel.receive(reader)) is not None:
                kind, payload = message
                if kind == "stop":
                    break
                self._handle(kind, payload)
        finally:
            status.cancel()
            # The kept log is flushed and closed; the BPF program is not detached here:
            # detaching 120 tracepoints takes the kernel seconds (an RCU grace period
            # each), and the exit closing our fds does it without anyone waiting on it.
            if self.log is not None:
                self.log.close()
            self._writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self._writer.wait_closed()

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "start":
            self._start(payload)
        elif kind == "views":
            if self.syscalls is not None:
                self.syscalls.set_workloads(payload)
        elif kind == "rules":
            triggers, tags = payload
            self.engine.set_rules(triggers, tags)
        elif kind == "viewers" and bool(payload) != self.viewers:
            # Subscribed only while someone watches: otherwise not even a call per event.
            self.viewers = bool(payload)
            if self.viewers:
                self.bus.subscribe(self._to_viewers)
            else:
                self.bus.unsubscribe(self._to_viewers)
        elif kind == "keep" and self.log is not None:
            for line in payload:
                self.log.append(line)

    def _start(self, start: WorkerStart) -> None:
        if start.log_dir is not None:
            self.log = EventLog(
                Path(start.log_dir), max_bytes=start.log_max_bytes, max_age=start.log_max_age
            )
            self.log.start()
            self.bus.subscribe(self.log.append)
        if not start.bpf:
            self.loaded = True
            self._send_status()
            return
        self.syscalls = SyscallMonitor(
            self.bus.publish,
            rate=start.rate,
            burst=start.burst,
            ringbuf_pages=start.ringbuf_pages,
            home_root=start.home_root,
        )
        assert self._loop is not None
        self._loop.create_task(self._load(self.syscalls))

    async def _load(self, syscalls: SyscallMonitor) -> None:
        assert self._loop is not None
        await syscalls.start_async(self._loop)
        self.loaded = True
        self._send_status()

    # --- to the daemon ---------------------------------------------------------------

    def _fired(self, alert: Alert) -> None:
        self._alerts.append(alert)
        self._schedule_flush()

    def _to_viewers(self, event: ev.Event) -> None:
        line = ev.live_line(self._encoder.encode(event))
        self._lines.append((event.workload, ev.kind_of(event), line))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        # Once per drain of the ring buffer, not once per event.
        if not self._flushing and self._loop is not None:
            self._flushing = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        if self._alerts:
            alerts, self._alerts = self._alerts, []
            # The figures first: whoever reads the alert and then asks for status sees
            # at least the events that made it.
            self._send_status()
            self._send("alerts", alerts)
        if self._lines:
            lines, self._lines = self._lines, []
            writer = self._writer
            if writer is not None and writer.transport.get_write_buffer_size() > MAX_UNSENT:
                self.viewer_dropped += len(lines)
            else:
                self._send("events", lines)

    def _status_tick(self) -> None:
        assert self._loop is not None
        self._loop.call_later(STATUS_INTERVAL, self._status_tick)
        self._send_status()

    def _send_status(self) -> None:
        log = self.log
        self._send(
            "status",
            WorkerStatus(
                syscalls=self.syscalls.status if self.syscalls is not None else SyscallStatus(),
                loaded=self.loaded,
                log_written=log.written if log is not None else 0,
                log_dropped=log.dropped if log is not None else 0,
                log_error=log.error if log is not None else "",
            ),
        )

    def _send(self, kind: str, payload: Any) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(channel.frame(kind, payload))


def main(argv: list[str]) -> int:
    """Serve the daemon (pid argv[2]) over the inherited socket whose fd is argv[1]."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(argv[2]):
        return 1  # the daemon died before the line above took effect
    sock = socket.socket(fileno=int(argv[1]))
    asyncio.run(Worker(sock).run())
    # Straight out: no atexit (BCC's would detach every tracepoint, one by one, first).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    # Through the module's own name: what it pickles must name supervisor.monitors.*,
    # which the daemon can import, never __main__.
    from supervisor.monitors.worker import main as _main

    sys.exit(_main(sys.argv))
