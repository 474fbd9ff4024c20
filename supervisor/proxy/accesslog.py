"""Squid's access log, as events: each proxied request, attributed to its workload by the
port it came in on, published on the monitor bus (so into the kept event log, the live
monitor and the triggers). The log is read from where it was left, on a timer, a few
kilobytes at a time; the same timer lets expired `egress-allow` names lapse.

Where it was left is kept in the state directory, so a request Squid refused while the
daemon was down (restarted, upgraded) is still an event, and an alert, once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote

from ..monitors import events as ev
from .control import load_inputs, open_proxys_file, refresh
from .squid_conf import ProxyLayout

#: Read at most this much per tick (the rest waits for the next).
CHUNK = 1 << 20
#: How often expired live allows are looked for (seconds).
EXPIRY_EVERY = 10.0
#: The kept position's record: "DEV INODE OFFSET CRC", padded to a fixed size so each
#: save is one pwrite over the last (no fsync on the loop: a crash at worst re-reads or
#: skips one tick's lines). CRC is of the _TAIL bytes before OFFSET: a log truncated, or
#: replaced by one with a reused inode number, does not pass for the one that was read.
_POSITION_SIZE = 96
_TAIL = 64


class _Position(NamedTuple):
    dev: int
    ino: int
    offset: int
    crc: int


def _saved_position(path: Path) -> _Position | None:
    try:
        with path.open("rb") as f:
            first = f.read(_POSITION_SIZE).split(b"\n", 1)[0]
        return _Position(*(int(x) for x in first.split()))
    except (OSError, ValueError, TypeError):
        return None


def _resume_at(path: Path, saved: _Position | None) -> tuple[tuple[int, int], bytes]:
    """Where to start following `path`: the saved position when the file is the one it
    was taken of (with the bytes before it), its start when it is another, its end
    when nothing was saved. OSError when it cannot be read."""
    fd = open_proxys_file(path)
    try:
        st = os.fstat(fd)
        if saved is None:
            n = min(_TAIL, st.st_size)
            return (st.st_ino, st.st_size), os.pread(fd, n, st.st_size - n)
        n = min(_TAIL, saved.offset)
        tail = os.pread(fd, n, saved.offset - n) if st.st_size >= saved.offset else b""
        same = (st.st_dev, st.st_ino) == (saved.dev, saved.ino) and len(tail) == n
        if same and zlib.crc32(tail) == saved.crc:
            return (st.st_ino, saved.offset), tail
        return (st.st_ino, 0), b""
    finally:
        os.close(fd)


def _opt(text: str) -> str | None:
    return None if text in ("-", "") else text


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


#: What a host name (or an address) in a log field may be once unescaped.
_HOST = re.compile(r"[A-Za-z0-9._:\[\]-]{1,255}")
_WORD = re.compile(r"[A-Za-z0-9_-]{1,32}")


def _host(text: str) -> str | None:
    value = unquote(text)
    return value if _HOST.fullmatch(value) else None


class BadLine(ValueError):
    """A line that is not in squid_conf.LOGFORMAT."""


def parse(line: str, by_port: dict[int, str]) -> ev.Proxied | None:
    """One line in squid_conf.LOGFORMAT; None when it is no workload's (a port no longer
    anyone's, the peek's own record). Strict: Squid escapes what a client wrote, and
    anything else raises BadLine, so a crafted SNI or name can neither forge a line nor
    pass as another workload's."""
    f = line.split(" ")
    if len(f) != 12:
        raise BadLine(f"{len(f)} fields")
    ts, lport, method, domain_raw, port, sent, received, status, http, sni_raw, server, mode = f
    if not _WORD.fullmatch(unquote(method)) or not _WORD.fullmatch(status):
        raise BadLine("method or status")
    workload = by_port.get(_int(lport) or -1)
    if workload is None:
        return None
    domain = _host(domain_raw)
    sni = None if sni_raw == "-" else (_host(sni_raw) or "(not a name)")
    mode = unquote(mode)
    if domain is None or any(_int(x) is None for x in (port, sent, received, http) if x != "-"):
        raise BadLine("domain or numbers")
    if status == "NONE_NONE" and mode == "splice":
        return None  # the peek's own record; the tunnel's (TCP_TUNNEL, with bytes) follows
    code = _int(http)
    refused = "DENIED" in status or mode == "terminate" or code == 403
    try:
        when = float(ts)
    except ValueError:
        raise BadLine("time") from None
    return ev.Proxied(
        ts=when,
        workload=workload,
        domain=domain,
        port=_int(port),
        method=unquote(method),
        allowed=not refused,
        status=status,
        http=code,
        sent=_int(sent) or 0,
        received=_int(received) or 0,
        sni=sni,
        server=_opt(server) if server == "-" or _HOST.fullmatch(server) else None,
        tls=_opt(mode),
    )


class ProxyLogMonitor:
    """Follows the access log (across truncation and replacement); degraded when absent."""

    def __init__(self, publish: Callable[[ev.Event], None], interval: float = 1.0) -> None:
        self.publish = publish
        self.interval = interval
        self.layout: ProxyLayout | None = None
        self.by_port: dict[int, str] = {}
        self.state = "off"
        self.detail = ""
        self.requests = 0
        self.refused = 0
        #: Lines that are not in our format: said in `status`, never skipped silently.
        self.malformed = 0
        self._where: tuple[int, int] | None = None  # (inode, offset)
        self._partial = b""
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_expiry = 0.0
        self._position_fd: int | None = None
        self._saved: _Position | None = None
        #: The log's device, and the last _TAIL bytes read whole (what the position's CRC is of).
        self._dev = 0
        self._tail = b""
        #: Why its position is not being kept (it still follows the log), or None.
        self._position_problem: str | None = None

    def configure(self, layout: ProxyLayout) -> None:
        """Follow this proxy's log, with the ports its inputs give each workload."""
        self.layout = layout
        inputs = load_inputs(layout)
        self.by_port = {p: n for n, p in inputs.ports.items()} if inputs else {}
        if not self.by_port:
            self.state, self.detail = "off", "no workload goes out through the proxy"

    def start(self, loop: asyncio.AbstractEventLoop, position: Path | None = None) -> None:
        """Follow the log from where the last run left it (kept in `position`), or, the
        first time, from its end."""
        self._loop = loop
        saved = _saved_position(position) if position is not None else None
        if self.layout is not None:
            with contextlib.suppress(OSError):  # read() says why, at its first tick
                self._where, self._tail = _resume_at(self.layout.access_log, saved)
        if position is not None:
            try:
                self._position_fd = os.open(
                    position, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
                )
                os.ftruncate(self._position_fd, _POSITION_SIZE)
            except OSError as exc:
                self._position_problem = f"cannot keep its position in {position}: {exc.strerror}"
        self._timer = loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._position_fd is not None:
            os.close(self._position_fd)
            self._position_fd = None

    def _keep_position(self) -> None:
        """Save where the next read starts (before a partial line, so it is read whole)."""
        if self._position_fd is None or self._where is None:
            return
        ino, offset = self._where[0], self._where[1] - len(self._partial)
        where = _Position(self._dev, ino, offset, zlib.crc32(self._tail))
        if where == self._saved:
            return
        record = " ".join(map(str, where)).encode().ljust(_POSITION_SIZE - 1) + b"\n"
        try:
            os.pwrite(self._position_fd, record, 0)
            self._saved, self._position_problem = where, None
        except OSError as exc:
            self._position_problem = f"cannot keep its position: {exc.strerror}"

    def _tick(self) -> None:
        try:
            self.read()
            if self.by_port and time.monotonic() >= self._next_expiry and self._loop:
                self._next_expiry = time.monotonic() + EXPIRY_EVERY
                layout = self.layout
                assert layout is not None
                self._loop.run_in_executor(None, self._refresh, layout)
        finally:
            if self._loop is not None:
                self._timer = self._loop.call_later(self.interval, self._tick)

    def _refresh(self, layout: ProxyLayout) -> None:
        """Lapse expired allows and put back a hand edit (in a thread: it writes files)."""
        try:
            refresh(layout)
        except OSError as exc:
            self.state, self.detail = "degraded", f"cannot refresh {layout.dir}: {exc}"

    def read(self) -> int:
        """Publish the lines written since the last read; how many."""
        if self.layout is None or not self.by_port:
            return 0
        path: Path = self.layout.access_log
        try:
            fd = open_proxys_file(path)  # the daemon is root; the directory is the proxy's
        except OSError as exc:
            self.state, self.detail = "degraded", f"{path}: {exc.strerror}"
            return 0
        try:
            st = os.fstat(fd)
            ino, offset = self._where if self._where is not None else (st.st_ino, 0)
            if ino != st.st_ino or st.st_size < offset:
                # Replaced or truncated: from its start.
                offset, self._partial, self._tail = 0, b"", b""
            data = os.pread(fd, CHUNK, offset)
        finally:
            os.close(fd)
        self._where, self._dev = (st.st_ino, offset + len(data)), st.st_dev
        if self._position_problem is not None:
            self.state, self.detail = "degraded", self._position_problem
        elif not self.malformed:
            self.state, self.detail = "ok", f"following {path}"
        pending = self._partial + data
        *lines, self._partial = pending.split(b"\n")
        end = len(pending) - len(self._partial)  # the whole lines' end
        self._tail = (self._tail + pending[max(0, end - _TAIL) : end])[-_TAIL:]
        published = 0
        for raw in lines:
            try:
                event = parse(raw.decode("utf-8", "replace"), self.by_port)
            except BadLine:
                self.malformed += 1
                self.state, self.detail = "degraded", f"{self.malformed} malformed log lines"
                continue
            if event is None:
                continue
            self.requests += 1
            self.refused += not event.allowed
            self.publish(event)
            published += 1
        self._keep_position()
        return published
