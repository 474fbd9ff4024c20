"""Records from bpf/monitor.c as typed events: a table from kind to decoder.

The decoders also keep the process table (lineage: cwd, fds) and provenance current, so
they see every record, also those that become no event (close, chdir, pipe).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import events as ev
from .abi import (
    ARGC,
    ARGLEN,
    DATA_OFF,
    ENVLEN,
    GIDS,
    HEADER,
    PATH_OFF,
    Kind,
    SetidCall,
)
from .fsdecode import O_CLOEXEC, FileDecoders, cstr
from .lineage import Fd, Lineage, Proc, read_fd, resolve
from .provenance import FEEDERS, Provenance, is_shell, program
from .sockaddr import FAMILIES, SOCK_TYPES, decode_sockaddr

AT_EMPTY_PATH = 0x1000
UID_CALLS = frozenset({SetidCall.SETUID, SetidCall.SETREUID, SetidCall.SETRESUID})
UID_CALLS |= {SetidCall.SETFSUID}
TEMP_DIRS = ("/tmp/", "/dev/shm/", "/var/tmp/", "/run/user/")
#: Records without an outcome of their own.
NO_OUTCOME = frozenset({Kind.THROTTLED, Kind.EXIT, Kind.COMM, Kind.CWD, Kind.COMPAT})
OPEN = int(Kind.OPEN)


@dataclass
class WorkloadView:
    """What enrichment needs to know about each watched workload."""

    name: str
    home: str
    merged: str | None
    upper: str | None
    uid: int = -1
    gid: int = -1
    groups: frozenset[int] = frozenset()
    #: Destinations on the LAN it is meant to reach: configured resolvers (port 53) and
    #: its host_services (address, port).
    resolvers: frozenset[str] = frozenset()
    services: frozenset[tuple[str, int]] = frozenset()
    cgroups: tuple[str, ...] = field(default_factory=tuple)


def env_wanted(entry: str) -> bool:
    name = entry.split("=", 1)[0]
    return (
        name.startswith(("LD_", "HISTFILE"))
        or name.lower().endswith("_proxy")
        or name.lower() == "no_proxy"
    )


Decoder = Callable[[bytes, dict[str, Any], Proc, tuple[int, ...], int], ev.Event | None]


class Decode(FileDecoders):
    """Turns raw records into events; `out` collects the derived ones (pipe-shell)."""

    def __init__(self, home_root: str, read_prefixes: tuple[str, ...]) -> None:
        self.home_root = home_root.rstrip("/") + "/"
        self.read_prefixes = read_prefixes
        self.lineage = Lineage()
        self.provenance = Provenance()
        self.views: dict[int, WorkloadView] = {}  # workload index -> view
        self.names: frozenset[str] = frozenset()
        self.boot_offset = time.time() - time.monotonic()
        self.extra: list[ev.Event] = []
        self._pipes = 0
        # pipe id -> the process reading it on fd 0 / writing it on fd 1 (a snapshot: the
        # feeder may be gone before the shell's exec is decoded)
        self._stdin_of: dict[str, Proc] = {}
        self._stdout_of: dict[str, Proc] = {}
        self._piped: set[str] = set()
        #: The workload of the record being decoded (also after a decoder failed on it).
        self.current: WorkloadView | None = None
        self._comms: dict[bytes, str] = {}  # the kernel's 16 comm bytes -> text
        self._paths: dict[bytes, tuple[str, bool, bool, bool]] = {}
        self.table: dict[int, Decoder] = {
            Kind.EXEC: self._exec,
            Kind.CONNECT: self._connect,
            Kind.BIND: self._bind,
            Kind.LISTEN: self._listen,
            Kind.SOCKET: self._socket,
            Kind.PTRACE: self._ptrace,
            Kind.SETID: self._setid,
            Kind.CAPSET: self._capset,
            Kind.MOUNT: self._mount,
            Kind.UMOUNT: self._umount,
            Kind.BPF: self._bpf,
            Kind.MODULE: self._module,
            Kind.COMPAT: lambda raw, base, p, n, res: ev.Compat(number=n[0], **base),
            Kind.UNSHARE: self._unshare,
            Kind.SETNS: self._setns,
            Kind.EXIT: self._exit,
            Kind.THROTTLED: self._throttled,
            Kind.RENAME: self._rename,
            Kind.LINK: self._link,
            Kind.SYMLINK: self._symlink,
            Kind.UNLINK: self._unlink,
            Kind.MKNOD: self._mknod,
            Kind.CHMOD: self._chmod,
            Kind.CHOWN: self._chown,
            Kind.UTIMES: self._utimes,
            Kind.MEMFD: self._memfd,
            Kind.DUP: self._dup,
            Kind.CLOSE: self._close,
            Kind.CHDIR: self._chdir,
            Kind.COMM: self._comm,
            Kind.PIPE: self._pipe,
            Kind.CWD: self._cwd,
        }

    def set_views(self, views: Mapping[int, WorkloadView]) -> None:
        self.views = dict(views)
        self.names = frozenset(v.name for v in views.values())

    # --- the entry point ---------------------------------------------------------------

    def decode(self, raw: bytes) -> ev.Event | None:
        """One record as an event (None: bookkeeping only, or unknown)."""
        if raw[0] == OPEN:  # most records are opens: they have a header of their own
            return self._open(raw)
        h = HEADER.unpack_from(raw)
        kind, pid, _tid, uid, _gid, idx, ts_ns, result = h[:8]
        nums = h[8:-1]
        view = self.current = self.views.get(idx)
        ts = self.boot_offset + ts_ns / 1e9
        comm = self._comms.get(h[-1]) or self._comm_text(h[-1])
        workload = view.name if view else None
        base: dict[str, Any] = {
            "ts": ts,
            "workload": workload,
            "uid": uid,
            "pid": pid,
            "comm": comm,
        }
        if kind == Kind.FORK:
            child = self.lineage.fork(int(nums[0]), int(nums[1]), uid, ts, comm)
            base["ppid"] = child.ppid
            return ev.Fork(child=int(nums[1]), **base)
        p = self.lineage.proc(pid, uid, ts)
        base["ppid"] = p.ppid
        decoder = self.table.get(kind)
        if decoder is None:
            return None
        if kind not in NO_OUTCOME:
            base["result"] = result
            if result < 0:
                base["error"] = ev.error_name(result)
        return decoder(raw, base, p, nums, result)

    # --- helpers -----------------------------------------------------------------------

    def _view(self, base: dict[str, Any]) -> WorkloadView | None:
        return self.current

    # --- exec ----------------------------------------------------------------------------

    def _exec(self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int) -> Any:
        dirfd, flags, at = int(n[0]), int(n[1]), int(n[2])
        filename = self._path(raw)
        argv = []
        for i in range(ARGC):
            arg = cstr(raw, DATA_OFF + i * ARGLEN, ARGLEN)
            if not arg:
                break
            argv.append(arg)
        env_off = DATA_OFF + ARGC * ARGLEN
        env = [cstr(raw, env_off + i * ENVLEN, ENVLEN) for i in range(int(n[4]))]
        env = [e for e in env if env_wanted(e)]
        memfd = False
        if at and (flags & AT_EMPTY_PATH) and not filename:
            path, _ = self._fd_path(p, dirfd)
            memfd = path.startswith("/memfd:")
        elif filename.startswith(("/proc/self/fd/", "/dev/fd/", f"/proc/{p.pid}/fd/")):
            fd = filename.rsplit("/", 1)[1]
            # isdigit() alone admits "²", which int() refuses.
            path, _ = (
                self._fd_path(p, int(fd)) if fd.isascii() and fd.isdigit() else (filename, False)
            )
            memfd = path.startswith("/memfd:")
        else:
            path, _ = resolve(p, dirfd, filename)
        view = self._view(base)
        maker = self.provenance.maker(path)
        dropped = maker is not None or self._in_workload_files(view, path)
        event = ev.Exec(
            filename=path,
            argv=argv,
            caller=p.exe or None,
            env=env,
            dropped=dropped,
            dropped_by=maker.describe() if maker else None,
            temp=path.startswith(TEMP_DIRS) and not path.startswith(self.home_root),
            memfd=memfd,
            **base,
        )
        if res == 0:
            self.lineage.exec(p, path, argv, program(path)[:15])
            self._check_pipe(p)
        return event

    @staticmethod
    def _in_workload_files(view: WorkloadView | None, path: str) -> bool:
        """Does the executed file live where the workload writes (work/, its upper layer)?"""
        if view is None or not path.startswith("/"):
            return False
        if path.startswith(view.home.rstrip("/") + "/work/"):
            return True
        if view.merged and view.upper and path.startswith(view.merged.rstrip("/") + "/"):
            rel = path[len(view.merged.rstrip("/")) + 1 :]
            return os.path.lexists(os.path.join(view.upper, rel))
        return False

    def _check_pipe(self, p: Proc) -> None:
        """After an exec: is this a shell fed by a network tool or decoder, or a feeder
        whose output goes to a shell? Either order gives one pipe-shell event."""
        stdin, stdout = p.fds.get(0), p.fds.get(1)
        if is_shell(p.exe) and stdin is not None and stdin.kind == "pipe" and stdin.end == "r":
            self._stdin_of[stdin.name] = self._snapshot(p)
            self._match_pipe(stdin.name)
        if (
            program(p.exe) in FEEDERS
            and stdout is not None
            and stdout.kind == "pipe"
            and stdout.end == "w"
        ):
            self._stdout_of[stdout.name] = self._snapshot(p)
            self._match_pipe(stdout.name)

    def _snapshot(self, p: Proc) -> Proc:
        if len(self._stdout_of) + len(self._stdin_of) > 8192:  # bounded: oldest first
            for table in (self._stdin_of, self._stdout_of):
                for key in list(table)[: len(table) // 2]:
                    del table[key]
        return Proc(
            pid=p.pid,
            ppid=p.ppid,
            uid=p.uid,
            started=p.started,
            comm=p.comm,
            exe=p.exe,
            argv=list(p.argv),
        )

    def _match_pipe(self, pipe: str) -> None:
        shell = self._stdin_of.get(pipe)
        feeder = self._stdout_of.get(pipe)
        if shell is None or feeder is None or pipe in self._piped:
            return
        if not is_shell(shell.exe) or program(feeder.exe) not in FEEDERS:
            return
        self._piped.add(pipe)
        view = next((v for v in self.views.values() if v.uid == shell.uid), None)
        self.extra.append(
            ev.PipeToShell(
                ts=time.time(),
                workload=view.name if view else None,
                uid=shell.uid,
                pid=shell.pid,
                ppid=shell.ppid,
                comm=shell.comm,
                shell=shell.exe,
                feeder=feeder.exe,
                feeder_argv=feeder.argv,
                feeder_pid=feeder.pid,
            )
        )

    # --- fds -----------------------------------------------------------------------------

    def _dup(self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int) -> Any:
        oldfd, flags = int(n[0]), int(n[2])
        src = p.fds.get(oldfd)
        if src is None:
            # Not one the table has (inherited from before the monitor, accept()...).
            link = read_fd(p.pid, oldfd) or ""
            if link.startswith("socket:"):
                src = Fd("socket", link)
            elif link.startswith("pipe:"):
                src = Fd("pipe", link, end="r" if oldfd == 0 else "w")
            elif link.startswith("/"):
                src = Fd("file", link)
        if res < 0:
            return None
        if src is not None:
            p.fds[res] = Fd(src.kind, src.name, bool(flags & O_CLOEXEC), src.end, src.bound)
        else:
            p.fds.pop(res, None)
        if res > 2:
            return None
        # A network socket known from its socket() (an AF_UNIX socketpair is how runtimes
        # wire a child's stdio, not a reverse shell).
        if src is None or src.kind != "socket" or not src.name.startswith("inet"):
            return None
        return ev.Dup(oldfd=oldfd, newfd=res, target=src.name, socket=True, **base)

    def _close(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        p.fds.pop(int(n[0]), None)
        return None

    def _pipe(self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int) -> Any:
        if res == 0:
            self._pipes += 1
            pipe = f"{p.pid}:{self._pipes}"
            cloexec = bool(int(n[0]) & O_CLOEXEC)
            p.fds[int(n[1])] = Fd("pipe", pipe, cloexec, "r")
            p.fds[int(n[2])] = Fd("pipe", pipe, cloexec, "w")
        return None

    # --- network -------------------------------------------------------------------------

    def _sockaddr(self, raw: bytes, n: tuple[int, ...]) -> tuple[str, str | None, int | None]:
        return decode_sockaddr(raw[PATH_OFF : PATH_OFF + min(max(int(n[1]), 0), 28)])

    def _connect(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        family, addr, port = self._sockaddr(raw, n)
        service = None
        view = self._view(base)
        if view is not None and addr is not None:
            if port == 53 and addr in view.resolvers:
                service = "dns"
            elif (addr, port) in view.services:
                service = "host-service"
        return ev.Connect(family=family, addr=addr, port=port, service=service, **base)

    def _bind(self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int) -> Any:
        family, addr, port = self._sockaddr(raw, n)
        f = p.fds.get(int(n[0]))
        if res == 0 and f is not None:
            f.bound = (addr, port)
        return ev.Bind(family=family, addr=addr, port=port, **base)

    def _listen(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        f = p.fds.get(int(n[0]))
        addr, port = f.bound if f is not None and f.bound else (None, None)
        return ev.Listen(fd=int(n[0]), backlog=int(n[1]), addr=addr, port=port, **base)

    def _socket(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        family = FAMILIES.get(int(n[0]), str(n[0]))
        stype = SOCK_TYPES.get(int(n[1]) & 0xF, str(int(n[1]) & 0xF))
        if res >= 0:
            p.fds[res] = Fd("socket", f"{family}/{stype}", bool(int(n[1]) & O_CLOEXEC))
        return ev.Socket(
            family=family,
            type=stype,
            protocol=int(n[2]),
            raw=family == "packet" or stype in ("raw", "packet"),
            **base,
        )

    # --- privilege -----------------------------------------------------------------------

    def _ptrace(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        return ev.Ptrace(request=int(n[0]), target_pid=int(n[1]), **base)

    def _setid(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        try:
            call = SetidCall(int(n[0]))
        except ValueError:
            return None
        view = self._view(base)
        _, _, _, uid, gid = HEADER.unpack_from(raw)[:5]
        if call == SetidCall.SETGROUPS:
            count = max(0, min(int(n[1]), GIDS))
            raw_ids = raw[DATA_OFF : DATA_OFF + 4 * count]
            ids = [int.from_bytes(raw_ids[i : i + 4], "little") for i in range(0, len(raw_ids), 4)]
        else:
            ids = [int(x) for x in n[1:4] if int(x) != -1]
        # A gain is an id the process does not have: not its own (real) id, nor its
        # workload's. A drop to its own ids (make, Python's setgid(getgid())) is none.
        if call in UID_CALLS:
            own = {uid} | ({view.uid} if view else set())
        else:
            own = {gid} | ({view.gid} if view else set())
            if call == SetidCall.SETGROUPS and view is not None:
                own |= view.groups
        gain = any(i not in own for i in ids)
        return ev.Setid(call=call.name.lower(), ids=ids, gain=gain, **base)

    def _capset(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        # The kernel refuses (EPERM) exactly the capset that would raise a capability
        # the process does not hold; one that only lowers them succeeds.
        return ev.Capset(
            effective=int(n[0]) & 0xFFFFFFFFFFFFFFFF,
            permitted=int(n[1]) & 0xFFFFFFFFFFFFFFFF,
            inheritable=int(n[2]) & 0xFFFFFFFFFFFFFFFF,
            gain=res == -errno.EPERM,
            **base,
        )

    # --- system --------------------------------------------------------------------------

    def _mount(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        return ev.Mount(
            target=self._path(raw),
            fstype=cstr(raw, DATA_OFF, ARGLEN),
            source=cstr(raw, DATA_OFF + ARGLEN, ARGLEN),
            flags=int(n[0]),
            **base,
        )

    def _umount(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        return ev.Umount(target=self._path(raw), **base)

    def _bpf(self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int) -> Any:
        return ev.Bpf(cmd=int(n[0]), **base)

    def _module(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        return ev.Module(call="init_module" if n[0] == 1 else "finit_module", **base)

    def _unshare(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        return ev.Namespace(call="unshare", flags=int(n[0]), **base)

    def _setns(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        return ev.Namespace(call="setns", flags=int(n[1]), **base)

    # --- lineage ---------------------------------------------------------------------------

    def _exit(self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int) -> Any:
        self.lineage.exit(p.pid)
        return ev.Exit(**base)

    def _throttled(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        return ev.Throttled(dropped=int(n[0]), **base)

    def _comm(self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int) -> Any:
        new = cstr(raw, DATA_OFF, 16)
        p.comm = new
        return ev.Comm(old=self._path(raw), new=new, **base)
