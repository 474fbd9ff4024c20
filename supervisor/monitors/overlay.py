"""Watch each workload's overlay upper layer: every file it creates, writes, removes,
renames or re-permissions, with the path and size.

pyinotify, on the event loop (AsyncioNotifier). Directories are watched recursively and
a new directory is watched and then rescanned, so a directory created and filled at once
loses nothing. IN_Q_OVERFLOW (the kernel queue was full and events were dropped) is
reported, never ignored, and answered with a full rescan of the upper layer.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from . import events as ev
from .inotify_compat import load_pyinotify

pyinotify = load_pyinotify()
MASK = (
    pyinotify.IN_CREATE
    | pyinotify.IN_CLOSE_WRITE
    | pyinotify.IN_DELETE
    | pyinotify.IN_MOVED_FROM
    | pyinotify.IN_MOVED_TO
    | pyinotify.IN_ATTRIB
    | pyinotify.IN_Q_OVERFLOW
    | pyinotify.IN_DELETE_SELF
)


class OverlayWatcher:
    """One inotify instance for all the workloads' upper layers."""

    def __init__(self, publish: Callable[[ev.Event], None]) -> None:
        self.publish = publish
        self.wm = pyinotify.WatchManager()
        self.notifier: Any = None
        self.roots: dict[str, str] = {}  # upper dir -> workload
        #: upper dir -> where the workload sees it (its merged view), for reported paths
        self.merged: dict[str, str] = {}
        self.seen: set[str] = set()
        self.files_seen = 0
        self.overflows = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.notifier = pyinotify.AsyncioNotifier(self.wm, loop, default_proc_fun=self._on)

    def stop(self) -> None:
        if self.notifier is not None:
            self.notifier.stop()
            self.notifier = None

    def watch(self, workload: str, upper: str) -> None:
        """Watch one workload's upper layer (recursively), and take stock of what is there."""
        if upper in self.roots or not os.path.isdir(upper):
            return
        self.roots[upper] = workload
        self.wm.add_watch(upper, MASK, rec=True, auto_add=False, quiet=True)
        self._scan(upper, publish=False)

    def unwatch(self, upper: str) -> None:
        wd = self.wm.get_wd(upper)
        if wd is not None:
            self.wm.rm_watch(wd, rec=True, quiet=True)
        self.roots.pop(upper, None)

    def _root(self, path: str) -> str | None:
        for root in self.roots:
            if path == root or path.startswith(root + "/"):
                return root
        return None

    def _seen_as(self, root: str | None, path: str) -> str:
        """The path as the workload sees it: under its merged view, not the upper layer."""
        merged = self.merged.get(root) if root else None
        if root is None or merged is None:
            return path
        return merged + path[len(root) :]

    def _emit(self, op: str, path: str, is_dir: bool = False) -> None:
        size = None
        if op != "delete":
            try:
                size = os.lstat(path).st_size
            except OSError:
                size = None
        root = self._root(path)
        self.publish(
            ev.FileChange(
                ts=time.time(),
                workload=self.roots.get(root) if root else None,
                op=op,  # type: ignore[arg-type]
                path=self._seen_as(root, path),
                upper=path,
                size=size,
                is_dir=is_dir,
            )
        )

    def _on(self, event: Any) -> None:
        if event.mask & pyinotify.IN_Q_OVERFLOW:
            self.overflows += 1
            found = sum(self._scan(root, publish=True) for root in list(self.roots))
            self.publish(ev.Overflow(ts=time.time(), rescanned=found))
            return
        path = event.pathname
        is_dir = bool(event.dir)
        if event.mask & pyinotify.IN_CREATE:
            if is_dir:
                # Watch it, then look inside: files made before the watch was in place
                # would otherwise never be seen.
                self.wm.add_watch(path, MASK, rec=True, quiet=True)
                self._new(path, is_dir=True)
                self._scan(path, publish=True)
            else:
                self._new(path)
        elif event.mask & pyinotify.IN_CLOSE_WRITE:
            self._new(path, op="write")
        elif event.mask & (pyinotify.IN_DELETE | pyinotify.IN_MOVED_FROM):
            self.seen.discard(path)
            self._emit("delete" if event.mask & pyinotify.IN_DELETE else "rename", path, is_dir)
        elif event.mask & pyinotify.IN_MOVED_TO:
            if is_dir:
                self.wm.add_watch(path, MASK, rec=True, quiet=True)
                self._scan(path, publish=True)
            self._new(path, op="rename", is_dir=is_dir)
        elif event.mask & pyinotify.IN_ATTRIB:
            self._emit("attrib", path, is_dir)

    def _new(self, path: str, op: str = "create", is_dir: bool = False) -> None:
        if path not in self.seen:
            self.seen.add(path)
            if not is_dir:
                self.files_seen += 1
            self._emit("create" if op == "write" else op, path, is_dir)
            if op == "write":
                self._emit("write", path)
        elif op != "create":
            self._emit(op, path, is_dir)

    def _scan(self, top: str, publish: bool) -> int:
        """Record (and with `publish`, report) everything under `top` not seen before."""
        found = 0
        for dirpath, dirnames, filenames in os.walk(top):
            for d in dirnames:
                full = os.path.join(dirpath, d)
                if full not in self.seen:
                    self.seen.add(full)
                    if publish:
                        self.wm.add_watch(full, MASK, quiet=True)
                        self._emit("create", full, is_dir=True)
            for f in filenames:
                full = os.path.join(dirpath, f)
                if full not in self.seen:
                    self.seen.add(full)
                    self.files_seen += 1
                    found += 1
                    if publish:
                        self._emit("create", full)
        return found
