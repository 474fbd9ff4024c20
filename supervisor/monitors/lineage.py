"""Process lineage of the workloads: parent, workload, start time, from fork/exec/exit."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class Proc:
    pid: int
    ppid: int | None
    uid: int
    started: float
    comm: str = ""
    exe: str = ""


class Lineage:
    """A bounded table of the watched processes (the oldest are forgotten first)."""

    def __init__(self, limit: int = 65536) -> None:
        self.limit = limit
        self._procs: OrderedDict[int, Proc] = OrderedDict()

    def __len__(self) -> int:
        return len(self._procs)

    def fork(self, parent: int, child: int, uid: int, ts: float, comm: str) -> None:
        self._put(Proc(pid=child, ppid=parent, uid=uid, started=ts, comm=comm))

    def exec(self, pid: int, uid: int, ts: float, exe: str, comm: str) -> None:
        p = self._procs.get(pid)
        if p is None:
            p = Proc(pid=pid, ppid=read_ppid(pid), uid=uid, started=ts)
            self._put(p)
        p.exe = exe
        p.comm = comm

    def exit(self, pid: int) -> None:
        self._procs.pop(pid, None)

    def parent(self, pid: int) -> int | None:
        p = self._procs.get(pid)
        if p is not None:
            return p.ppid
        return read_ppid(pid)

    def get(self, pid: int) -> Proc | None:
        return self._procs.get(pid)

    def _put(self, p: Proc) -> None:
        self._procs[p.pid] = p
        self._procs.move_to_end(p.pid)
        while len(self._procs) > self.limit:
            self._procs.popitem(last=False)


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
