"""A cgroup-v2 group per workload, to freeze and thaw its processes together.

A workload's processes are found by their real uid (from /proc, by pid; never by name)
and moved into `<cgroup2>/clawvisor/<workload>`, which is then frozen with
`cgroup.freeze`; `cgroup.events` says when the freeze has taken hold. On a hybrid
hierarchy the v2 tree is /sys/fs/cgroup/unified.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path


class CgroupError(Exception):
    """No cgroup v2 here, or the kernel refused."""


def cgroup2_root() -> Path:
    """Where the cgroup v2 hierarchy is mounted."""
    candidates = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            candidates.append(Path(fields[1]))
    for path in candidates:
        if (path / "cgroup.controllers").exists():
            return path
    raise CgroupError("no cgroup v2 hierarchy is mounted")


def pids_of(uid: int) -> list[int]:
    """Living processes whose real uid is `uid` (zombies are dead: only unreaped)."""
    return [pid for pid, alive in _with_uid(uid, every=False) if alive]


def holders_of(uid: int) -> list[tuple[int, bool]]:
    """(pid, alive) of every process with `uid` as its real, effective, saved or fs uid,
    zombies included: what userdel counts as the user in use."""
    return _with_uid(uid, every=True)


def _with_uid(uid: int, every: bool) -> list[tuple[int, bool]]:
    """(pid, alive) from /proc: by the real uid, or (`every`) by any of the four."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as f:
                state = b""
                for line in f:
                    if line.startswith(b"State:"):
                        state = line.split()[1]
                    elif line.startswith(b"Uid:"):
                        ids = [int(x) for x in line.split()[1:5]]
                        if uid in (ids if every else ids[:1]):
                            out.append((int(entry), state not in (b"Z", b"X")))
                        break
        except OSError:
            continue
    return out


class WorkloadCgroup:
    """`<cgroup2>/clawvisor/<workload>`."""

    def __init__(self, workload: str, root: Path | None = None) -> None:
        self.path = (root or cgroup2_root()) / "clawvisor" / workload

    def ensure(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def members(self) -> set[int]:
        try:
            return {int(p) for p in (self.path / "cgroup.procs").read_text().split()}
        except FileNotFoundError:
            return set()

    def adopt(self, uid: int) -> int:
        """Move every process of `uid` in; repeat while new ones keep appearing."""
        self.ensure()
        moved = 0
        for _ in range(20):
            strays = set(pids_of(uid)) - self.members()
            if not strays:
                return moved
            for pid in strays:
                with contextlib.suppress(ProcessLookupError, FileNotFoundError, OSError):
                    (self.path / "cgroup.procs").write_text(str(pid))
                    moved += 1
        return moved

    def frozen(self) -> bool:
        try:
            for line in (self.path / "cgroup.events").read_text().splitlines():
                if line.startswith("frozen "):
                    return line.split()[1] == "1"
        except FileNotFoundError:
            pass
        return False

    def freeze(self, on: bool, timeout: float = 5.0) -> None:
        """Freeze or thaw, and wait until the kernel says it is done."""
        self.ensure()
        (self.path / "cgroup.freeze").write_text("1" if on else "0")
        deadline = time.monotonic() + timeout
        while self.frozen() != on:
            if time.monotonic() > deadline:
                raise CgroupError(
                    f"{self.path}: not {'frozen' if on else 'thawed'} after {timeout:g} s"
                )
            time.sleep(0.01)
