"""The kept event log: every monitor event and alert, bounded by size and age.

A rotated file, not a journald namespace: the monitors produce up to 100,000 events a
second, and journald takes one datagram per entry, indexes every field and rate-limits
a sender well below that; here one thread writes batches of JSON lines with one write()
each. Segments are `LOG_DIR/events/events-<first ms>.jsonl`; a segment is closed at
`segment_bytes`, and the oldest are removed while the total is over `max_bytes` or a
segment's newest event is older than `max_age`. Nothing is fsynced: this is a record for
hunting and a SIEM, not the audit trail (alerts are in the audit trail as well).

The event loop only appends the event to a list (`append`); encoding, writing, rotating
and pruning happen on the writer thread. If the writer falls behind by more than
`max_pending` events, newer ones are counted as dropped (status shows it) instead of
growing memory without bound.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

PREFIX, SUFFIX = "events-", ".jsonl"


def segments(directory: Path) -> list[Path]:
    """The segments, oldest first."""
    try:
        names = [n for n in os.listdir(directory) if n.startswith(PREFIX) and n.endswith(SUFFIX)]
    except OSError:
        return []
    return [directory / n for n in sorted(names, key=_first_ms)]


def _first_ms(name: str) -> int:
    try:
        return int(name[len(PREFIX) : -len(SUFFIX)])
    except ValueError:
        return 0


class EventLog:
    """The writer: owns the directory and one thread."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 1 << 30,
        max_age: float = 7 * 86400,
        segment_bytes: int | None = None,
        interval: float = 0.05,
        max_pending: int = 2_000_000,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.segment_bytes = segment_bytes or max(1 << 20, min(max_bytes // 8, 128 << 20))
        self.interval = interval
        self.max_pending = max_pending
        self.written = 0
        self.dropped = 0
        self.error = ""
        self._pending: list[Any] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._file: Any = None
        self._size = 0
        self._thread: threading.Thread | None = None
        self._encoder = msgspec.json.Encoder()

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        self._thread = threading.Thread(target=self._run, name="clawvisor-eventlog", daemon=True)
        self._thread.start()

    def append(self, item: Any) -> None:
        """Keep one event (or an alert line, already bytes). Called on the event loop."""
        pending = self._pending
        if len(pending) >= self.max_pending:
            self.dropped += 1
            return
        pending.append(item)

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def flush(self) -> None:
        """Write what is pending now (tests and shutdown)."""
        self._write_pending()

    # --- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval)
            self._wake.clear()
            self._write_pending()
        self._write_pending()
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write_pending(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                # Bounded chunks: encoding holds the GIL, so the loop gets turns between.
                for start in range(0, len(batch), 4096):
                    chunk = batch[start : start + 4096]
                    self._write(self._encode(chunk))
                    self.written += len(chunk)
                self.error = ""
            except OSError as exc:
                self.dropped += len(batch)
                self.error = f"{self.directory}: {exc}"

    def _encode(self, chunk: list[Any]) -> bytes:
        """JSON lines, in order: runs of events in one call each (half the cost of one
        call per event), alert lines (already bytes) as they are."""
        parts: list[bytes] = []
        run: list[Any] = []
        for item in chunk:
            if isinstance(item, bytes):
                if run:
                    parts.append(self._encoder.encode_lines(run))
                    run = []
                parts.append(item)
            else:
                run.append(item)
        if run:
            parts.append(self._encoder.encode_lines(run))
        return b"".join(parts)

    def _write(self, data: bytes) -> None:
        if self._file is None or self._size >= self.segment_bytes:
            self._rotate()
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
        path = self.directory / f"{PREFIX}{int(time.time() * 1000)}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self._file = os.fdopen(fd, "ab", buffering=0)
        self._size = 0
        self._prune()

    def _prune(self) -> None:
        """Remove the oldest segments while over the size or age limit (never the one
        being written)."""
        segs = segments(self.directory)
        sizes = {}
        for s in segs:
            with contextlib.suppress(OSError):
                sizes[s] = s.stat()
        total = sum(st.st_size for st in sizes.values())
        now = time.time()
        for s in segs[:-1]:
            st = sizes.get(s)
            if st is None:
                continue
            if total > self.max_bytes or now - st.st_mtime > self.max_age:
                with contextlib.suppress(OSError):
                    s.unlink()
                    total -= st.st_size
            else:
                break


def read(
    directory: Path, since: float, *, follow: bool = False, poll: float = 0.2
) -> Iterator[Any]:
    """Every kept line from `since` (epoch seconds) on, decoded; with `follow`, then
    the new ones as they are written (across rotations) until the caller stops."""
    position: dict[Path, int] = {}
    while True:
        for seg in segments(directory):
            try:
                st = seg.stat()
            except OSError:
                continue
            if seg not in position and st.st_mtime < since:
                position[seg] = st.st_size  # wholly before `since`
                continue
            offset = position.get(seg, 0)
            if st.st_size <= offset:
                continue
            with open(seg, "rb") as f:
                f.seek(offset)
                data = f.read()
            end = data.rfind(b"\n") + 1  # a line still being written waits for the next turn
            position[seg] = offset + end
            for line in data[:end].splitlines():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if float(obj.get("ts", 0)) >= since:
                    yield obj
        if not follow:
            return
        time.sleep(poll)
