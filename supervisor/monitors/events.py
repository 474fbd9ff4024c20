"""Monitor events: one msgspec Struct per kind, tagged on `kind`. The schema is the docs.

Events from syscalls carry their outcome: `result` is the syscall's return value (0 or
more on success, -errno on failure) and `error` the errno's name when it failed, so a
refused write or a failed PATH lookup never looks like the real thing.
"""

from __future__ import annotations

import errno
from typing import Literal

import msgspec


def error_name(result: int) -> str:
    """The errno name of a failed syscall's result (-13: "EACCES")."""
    return errno.errorcode.get(-result, str(-result))


Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")


class MonitorEvent(msgspec.Struct, tag_field="kind", kw_only=True, omit_defaults=True, gc=False):
    """What every event carries: when, which workload, and which process (if any)."""

    # gc=False: an event holds strings, numbers and lists of them, never itself, so it
    # cannot be part of a cycle; untracked, the 100,000 a second the monitors make (and
    # the kept log's backlog of them) do not each cost the cyclic collector a visit.

    ts: float
    workload: str | None = None
    uid: int | None = None
    pid: int | None = None
    ppid: int | None = None
    comm: str | None = None


class SyscallEvent(MonitorEvent, kw_only=True):
    """An event from a traced syscall: with its outcome (always shown, also when 0)."""

    result: int
    error: str | None = None


class Exec(SyscallEvent, tag="exec"):
    """A program was executed (or, with an error, an attempt failed: a PATH search tries
    several). `dropped`: the file was made by a watched process (written, copied, renamed
    into place, made executable: `dropped_by` names which; `temp`: it is in /tmp, /dev/shm,
    /var/tmp or /run/user, outside the homes) or lives where the workload
    writes (its overlay upper layer or work/); `memfd`: executed from memory (fileless);
    `env`: the entries of its environment that change what it loads or where its history
    and traffic go (LD_*, HISTFILE, *_proxy). `caller`: the program the process ran before
    (its parent's, after a fork), when that was a watched process."""

    filename: str
    argv: list[str] = []
    caller: str | None = None
    env: list[str] = []
    dropped: bool = False
    dropped_by: str | None = None
    temp: bool = False
    memfd: bool = False


class Connect(SyscallEvent, tag="connect"):
    """A socket connect(). `service`: the destination is one the workload is meant to
    reach on the LAN (`dns`: a configured resolver; `host-service`: its host_services)."""

    family: str
    addr: str | None = None
    port: int | None = None
    service: str | None = None


class Bind(SyscallEvent, tag="bind"):
    """A socket bound to a local address (a listener, usually)."""

    family: str
    addr: str | None = None
    port: int | None = None


class Listen(SyscallEvent, tag="listen"):
    """listen() on a socket; the address it was bound to when that was seen."""

    fd: int
    backlog: int
    addr: str | None = None
    port: int | None = None


class Socket(SyscallEvent, tag="socket"):
    """A socket was made. `raw`: a packet or raw socket (sniffing, crafting packets)."""

    family: str
    type: str
    protocol: int = 0
    raw: bool = False


class Open(SyscallEvent, tag="open"):
    """An open for writing or creating anywhere, or any open under the homes root or of a
    system secret. `path` is absolute, resolved against the process's cwd or the dirfd it
    was opened relative to; `resolved` is false when that directory was unknown."""

    path: str
    flags: int
    write: bool
    create: bool
    truncate: bool = False
    other_home: str | None = None
    resolved: bool = True


class Ptrace(SyscallEvent, tag="ptrace"):
    request: int
    target_pid: int


class Setid(SyscallEvent, tag="setuid"):
    """The id family: setuid, setreuid, setresuid, setgid, setregid, setresgid, setfsuid,
    setfsgid, setgroups (the ids asked for; unchanged ones left out). `gain`: it asks for
    an id the process does not have (a drop to its own ids is not a gain)."""

    call: str
    ids: list[int]
    gain: bool = False


class Capset(SyscallEvent, tag="capset"):
    """capset(): the sets asked for. `gain`: it tried to raise a capability the process
    does not hold (the kernel refused it); lowering them is not a gain."""

    effective: int = 0
    permitted: int = 0
    inheritable: int = 0
    gain: bool = False


class Mount(SyscallEvent, tag="mount"):
    target: str
    fstype: str = ""
    source: str = ""
    flags: int = 0


class Umount(SyscallEvent, tag="umount"):
    target: str


class Bpf(SyscallEvent, tag="bpf"):
    cmd: int


class Module(SyscallEvent, tag="module"):
    call: str


class Compat(MonitorEvent, tag="compat"):
    """A 32-bit syscall (`int 0x80`) by a watched process. The per-syscall tracepoints
    never see one, so an open or exec made that way would be no event of its own: it is
    this, with its i386 `number` (5 open, 11 execve...). On an x86-64 box a workload has
    no business making one."""

    number: int


class Namespace(SyscallEvent, tag="namespace"):
    """unshare() or setns()."""

    call: str
    flags: int


class Rename(SyscallEvent, tag="rename"):
    """A rename (moving a file into place, or tampering with logs and history)."""

    old: str
    new: str


class Link(SyscallEvent, tag="link"):
    """A hard link `path` to the existing file `target`."""

    target: str
    path: str


class Symlink(SyscallEvent, tag="symlink"):
    """A symbolic link `path` pointing at `target` (text, as given)."""

    target: str
    path: str


class Unlink(SyscallEvent, tag="unlink"):
    path: str
    dir: bool = False


class Mknod(SyscallEvent, tag="mknod"):
    path: str
    mode: int
    dev: int = 0


class Chmod(SyscallEvent, tag="chmod"):
    """A mode change. `setid`: it sets the setuid or setgid bit; `exec`: it makes the file
    executable; `dropped`: the file is one a watched process made."""

    path: str
    mode: int
    setid: bool = False
    exec: bool = False
    dropped: bool = False


class Chown(SyscallEvent, tag="chown"):
    path: str
    owner: int
    group: int


class Utimes(SyscallEvent, tag="utimes"):
    """Timestamps set. `explicit`: to given times, not to now (timestomping)."""

    path: str
    explicit: bool = False
    mtime: int | None = None


class Memfd(SyscallEvent, tag="memfd"):
    """An anonymous in-memory file (memfd_create)."""

    name: str
    flags: int = 0


class Dup(SyscallEvent, tag="dup"):
    """dup2/dup3 onto stdin, stdout or stderr. `socket`: what moved there is a socket
    (a reverse shell's shape)."""

    oldfd: int
    newfd: int
    target: str | None = None
    socket: bool = False


class Comm(MonitorEvent, tag="comm"):
    """A process renamed itself (prctl(PR_SET_NAME), /proc/self/comm): masquerading."""

    old: str
    new: str


class PipeToShell(MonitorEvent, tag="pipe-shell"):
    """A shell or interpreter whose stdin is a pipe from a network tool or a decoder
    (`curl ... | sh`, `base64 -d | bash`)."""

    shell: str
    feeder: str
    feeder_argv: list[str] = []
    feeder_pid: int | None = None


class Fork(MonitorEvent, tag="fork"):
    child: int


class Exit(MonitorEvent, tag="exit"):
    pass


class Throttled(MonitorEvent, tag="throttled"):
    """A workload produced events faster than allowed: some were dropped (a flood can blind
    a monitor, so this is itself an alert)."""

    dropped: int


class Lost(MonitorEvent, tag="lost"):
    """Events lost: the kernel could not hand them over (`ring-full`), or a record came
    that could not be decoded (`undecodable`: a decoder's fault, or a record crafted to
    find one; the rest of its batch is still decoded)."""

    count: int
    reason: Literal["ring-full", "undecodable"] = "ring-full"


class FileChange(MonitorEvent, tag="file"):
    """A change in a workload's overlay upper layer. `path` is where the workload sees the
    file (in its merged view); `upper` where it is in the upper layer."""

    op: Literal["create", "write", "delete", "rename", "attrib"]
    path: str
    upper: str | None = None
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


class Proxied(MonitorEvent, tag="proxy"):
    """A request a workload made through the egress proxy (from Squid's access log):
    `allowed` false when the proxy refused it (not on its list, an IP literal, a name
    resolving to a private address, an SNI that is not the CONNECT's host)."""

    domain: str
    method: str
    allowed: bool
    status: str
    port: int | None = None
    http: int | None = None
    sent: int = 0
    received: int = 0
    sni: str | None = None
    server: str | None = None
    tls: str | None = None


class MonitorState(MonitorEvent, tag="monitor"):
    """A monitor started, degraded or recovered."""

    monitor: str
    state: Literal["ok", "degraded"]
    detail: str = ""


Event = (
    Exec
    | Connect
    | Bind
    | Listen
    | Socket
    | Open
    | Ptrace
    | Setid
    | Capset
    | Mount
    | Umount
    | Bpf
    | Module
    | Compat
    | Namespace
    | Rename
    | Link
    | Symlink
    | Unlink
    | Mknod
    | Chmod
    | Chown
    | Utimes
    | Memfd
    | Dup
    | Comm
    | PipeToShell
    | Fork
    | Exit
    | Throttled
    | Lost
    | FileChange
    | Overflow
    | Net
    | Proxied
    | MonitorState
)
EVENT_TYPES: tuple[type[MonitorEvent], ...] = Event.__args__


def kind_of(event: MonitorEvent) -> str:
    """The event's `kind` tag."""
    return str(event.__struct_config__.tag)


def live_line(encoded: bytes) -> bytes:
    """An encoded JSON object as a live viewer's line: marked a monitor event at info."""
    return b'{"event":"monitor","severity":"info",' + encoded[1:] + b"\n"
