"""Small state files written atomically: a crash leaves the old file or the new, never half."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` via a temporary file, fsync and rename (then fsync the dir)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        # Exactly `mode`, whatever the umask (the daemon's unit sets 0077, and a file
        # another user must read, such as the proxy's configuration, would be unreadable).
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.rename(tmp, path)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dirfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def read_or_none(path: Path) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class Saver:
    """Keeps one state file in step with in-memory state, off the event loop.

    Writes (with their fsyncs) run in a worker thread, one at a time; a write takes a
    fresh snapshot when it starts, so changes made while one is in flight are grouped
    into the next. `commit()` returns once a write that started after the call has
    finished (or raises its OSError); `touch()` asks for one without waiting.
    """

    def __init__(
        self, path: Path, snapshot: Callable[[], bytes], on_error: Callable[[OSError], None]
    ) -> None:
        self.path = path
        self._snapshot = snapshot
        self._on_error = on_error
        self._wanted = 0
        self._written = 0
        self._task: asyncio.Task[None] | None = None

    async def commit(self) -> None:
        """Persist the state as it is now; OSError when the file could not be written."""
        self._wanted += 1
        want = self._wanted
        while self._written < want:
            task = self._start()
            await asyncio.shield(task)

    def touch(self) -> None:
        """Persist the state soon; a failure is reported through `on_error`."""
        self._wanted += 1
        self._start()

    def write_now(self) -> None:
        """Write synchronously (at start and stop, when no loop runs the writes)."""
        self._wanted += 1
        want = self._wanted
        write_atomic(self.path, self._snapshot())
        self._written = max(self._written, want)

    def _start(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._write())
            # touch() never awaits it: its failure went to on_error already.
            self._task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return self._task

    async def _write(self) -> None:
        try:
            while self._written < self._wanted:
                want = self._wanted
                data = self._snapshot()
                try:
                    await asyncio.to_thread(write_atomic, self.path, data)
                except OSError as exc:
                    self._on_error(exc)
                    # Whoever waits for this write learns it failed; later changes
                    # try again on their own commit.
                    self._written = max(self._written, want)
                    raise
                self._written = max(self._written, want)
        finally:
            self._task = None

    @property
    def idle(self) -> bool:
        """True when no write is in flight."""
        return self._task is None
