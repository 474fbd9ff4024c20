"""The watched processes: parent, start, program, and what paths mean to each of them.

Paths in syscalls are relative to the cwd or to a directory fd, and reading those from
/proc after the fact gives wrong answers (the process has moved on or gone). So each
process keeps its cwd (inherited at fork, changed by chdir/fchdir) and a table of the fds
that matter (directories, memfds, sockets, pipes: fed by the open, memfd_create, socket
and pipe exits, dup and close), and every `*at` path is resolved against them. /proc is
read only for what came before the monitor saw the process.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

AT_FDCWD = -100
FdKind = Literal["dir", "file", "memfd", "socket", "pipe"]


@dataclass(slots=True)
class Fd:
    """What an fd refers to: a path (dir, file), a memfd name, a socket, a pipe."""

    kind: FdKind
    name: str  # the path, memfd name, "inet/stream", or the pipe's id
    cloexec: bool = False
    end: Literal["r", "w", ""] = ""  # pipes: which end
    bound: tuple[str | None, int | None] | None = None  # sockets: bind()'s address


@dataclass(slots=True)
class Proc:
    pid: int
    ppid: int | None
    uid: int
    started: float
    comm: str = ""
    exe: str = ""
    argv: list[str] = field(default_factory=list)
    cwd: str | None = None
    fds: dict[int, Fd] = field(default_factory=dict)


class Lineage:
    """A bounded table of the watched processes (the oldest are forgotten first)."""

    def __init__(self, limit: int = 65536) -> None:
        self.limit = limit
        self._procs: OrderedDict[int, Proc] = OrderedDict()

    def __len__(self) -> int:
        return len(self._procs)

    def get(self, pid: int) -> Proc | None:
        return self._procs.get(pid)

    def proc(self, pid: int, uid: int, ts: float) -> Proc:
        """The process, taking stock from /proc the first time it is seen."""
        p = self._procs.get(pid)
        if p is None:
            p = Proc(pid=pid, ppid=read_ppid(pid), uid=uid, started=ts, cwd=read_cwd(pid))
            self._put(p)
        return p

    def fork(self, parent: int, child: int, uid: int, ts: float, comm: str) -> Proc:
        p = self._procs.get(parent)
        kid = Proc(pid=child, ppid=parent, uid=uid, started=ts, comm=comm)
        if p is not None:
            kid.cwd, kid.exe, kid.argv = p.cwd, p.exe, p.argv
            # Pipes, sockets and memfds go with the child (a pipeline's ends, a reverse
            # shell's socket). Directory fds do not: the kernel tracks closes per process,
            # so a child's copy could go stale unseen; an unknown dirfd is looked up.
            kid.fds = {n: f for n, f in p.fds.items() if f.kind in ("pipe", "socket", "memfd")}
        else:
            kid.cwd = read_cwd(child)
        self._put(kid)
        return kid

    def exec(self, p: Proc, exe: str, argv: list[str], comm: str) -> None:
        p.exe, p.argv, p.comm = exe, argv, comm
        p.fds = {n: f for n, f in p.fds.items() if not f.cloexec}

    def exit(self, pid: int) -> None:
        self._procs.pop(pid, None)

    def parent(self, pid: int) -> int | None:
        p = self._procs.get(pid)
        if p is not None:
            return p.ppid
        return read_ppid(pid)

    def _put(self, p: Proc) -> None:
        self._procs[p.pid] = p
        self._procs.move_to_end(p.pid)
        while len(self._procs) > self.limit:
            self._procs.popitem(last=False)


def resolve(p: Proc, dirfd: int, path: str) -> tuple[str, bool]:
    """`path` made absolute the way the kernel saw it: against the cwd or `dirfd`.
    (path, False) when that directory is not known (shown as `<fd N>/path`)."""
    if path.startswith("/"):
        # normpath only where it changes something: `.`/`..` parts, `//`, a trailing `/`.
        if "/." in path or "//" in path or path.endswith("/"):
            return os.path.normpath(path), True
        return path, True
    if dirfd == AT_FDCWD:
        base = p.cwd
        if base is None:
            base = p.cwd = read_cwd(p.pid)
    else:
        f = p.fds.get(dirfd)
        base = f.name if f is not None and f.kind in ("dir", "file") else read_fd(p.pid, dirfd)
    if base is None or not base.startswith("/"):
        return (f"<fd {dirfd}>/{path}" if path else f"<fd {dirfd}>"), False
    return (os.path.normpath(os.path.join(base, path)) if path else base), True


def read_ppid(pid: int) -> int | None:
    """The parent pid from /proc (for processes that existed before the monitor)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The comm field is in parentheses and may contain spaces: split after the last ')'.
    rest = data[data.rfind(b")") + 2 :].split()
    return int(rest[1]) if len(rest) > 1 else None


def read_cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def read_fd(pid: int, fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None
