"""Monitor events: one msgspec Struct per kind, tagged on `kind`. The schema is the docs."""

from __future__ import annotations

from typing import Literal

import msgspec

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")


class MonitorEvent(msgspec.Struct, tag_field="kind", kw_only=True, omit_defaults=True):
    """What every event carries: when, which workload, and which process (if any)."""

    ts: float
    workload: str | None = None
    uid: int | None = None
    pid: int | None = None
    ppid: int | None = None
    comm: str | None = None


class Exec(MonitorEvent, tag="exec"):
    """A program was executed. `dropped`: it lives where the workload writes (its overlay
    upper layer or work/); `memfd`: it was executed from memory (fileless)."""

    filename: str
    argv: list[str] = []
    dropped: bool = False
    memfd: bool = False


class Connect(MonitorEvent, tag="connect"):
    """A socket connect()."""

    family: str
    addr: str | None = None
    port: int | None = None


class Open(MonitorEvent, tag="open"):
    """An open for writing or creating, or any open under another workload's home."""

    path: str
    flags: int
    write: bool
    create: bool
    other_home: str | None = None


class Ptrace(MonitorEvent, tag="ptrace"):
    request: int
    target_pid: int


class Setid(MonitorEvent, tag="setuid"):
    """setuid/setreuid/setresuid/setgid/setresgid (the ids asked for; -1: unchanged)."""

    call: str
    ids: list[int]


class Capset(MonitorEvent, tag="capset"):
    pass


class Mount(MonitorEvent, tag="mount"):
    target: str
    fstype: str = ""
    source: str = ""
    flags: int = 0


class Umount(MonitorEvent, tag="umount"):
    target: str


class Bpf(MonitorEvent, tag="bpf"):
    cmd: int


class Module(MonitorEvent, tag="module"):
    call: str


class Namespace(MonitorEvent, tag="namespace"):
    """unshare() or setns()."""

    call: str
    flags: int


class Fork(MonitorEvent, tag="fork"):
    child: int


class Exit(MonitorEvent, tag="exit"):
    pass


class Throttled(MonitorEvent, tag="throttled"):
    """A workload produced events faster than allowed: some were dropped (a flood can blind
    a monitor, so this is itself an alert)."""

    dropped: int


class Lost(MonitorEvent, tag="lost"):
    """Events the kernel could not hand over (ring buffer full)."""

    count: int


class FileChange(MonitorEvent, tag="file"):
    """A change in a workload's overlay upper layer."""

    op: Literal["create", "write", "delete", "rename", "attrib"]
    path: str
    size: int | None = None
    is_dir: bool = False


class Overflow(MonitorEvent, tag="overflow"):
    """The inotify queue overflowed: events were lost, and the upper layer was rescanned."""

    rescanned: int


class Net(MonitorEvent, tag="net"):
    """Traffic a workload's nftables counter saw since the last reading."""

    reason: str
    packets: int
    bytes: int


class MonitorState(MonitorEvent, tag="monitor"):
    """A monitor started, degraded or recovered."""

    monitor: str
    state: Literal["ok", "degraded"]
    detail: str = ""


Event = (
    Exec
    | Connect
    | Open
    | Ptrace
    | Setid
    | Capset
    | Mount
    | Umount
    | Bpf
    | Module
    | Namespace
    | Fork
    | Exit
    | Throttled
    | Lost
    | FileChange
    | Overflow
    | Net
    | MonitorState
)
