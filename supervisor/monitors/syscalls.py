"""Load bpf/monitor.c with BCC, feed its ring buffer into the event loop, decode events.

The ring buffer's map fd is pollable, so it sits on the asyncio loop with add_reader;
each wake-up drains it with a non-blocking consume (the callbacks only copy bytes) and
then decodes, enriches and publishes the batch. Lost events (counted in the kernel) are
read periodically and published as Lost events. A program that cannot load (no BPF, no
headers) leaves the monitor degraded, never the daemon down.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import struct
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import events as ev
from .lineage import Lineage


def _bpf_source() -> Path:
    """bpf/monitor.c of a source tree, else the copy an installed build carries."""
    in_tree = Path(__file__).resolve().parents[2] / "bpf" / "monitor.c"
    if in_tree.is_file():
        return in_tree
    return Path(sys.prefix) / "share" / "clawvisor" / "bpf" / "monitor.c"


BPF_SOURCE = _bpf_source()
TRACEFS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
TRACEPOINTS = (
    "syscalls/sys_enter_execve",
    "syscalls/sys_enter_execveat",
    "sched/sched_process_exec",
    "syscalls/sys_enter_connect",
    "syscalls/sys_enter_openat",
    "syscalls/sys_enter_ptrace",
    "syscalls/sys_enter_setuid",
    "syscalls/sys_enter_setreuid",
    "syscalls/sys_enter_setresuid",
    "syscalls/sys_enter_setgid",
    "syscalls/sys_enter_setresgid",
    "syscalls/sys_enter_capset",
    "syscalls/sys_enter_mount",
    "syscalls/sys_enter_umount",
    "syscalls/sys_enter_bpf",
    "syscalls/sys_enter_init_module",
    "syscalls/sys_enter_finit_module",
    "syscalls/sys_enter_unshare",
    "syscalls/sys_enter_setns",
    "sched/sched_process_fork",
    "sched/sched_process_exit",
)
HEADER = struct.Struct("<IIIIQ4q16s")  # kind, pid, tid, uid, ts, num[4], comm
PATH_OFF, PATH_LEN, ARGV_OFF, ARGC, ARGLEN = 72, 256, 328, 8, 64
SETID_CALLS = {1: "setuid", 2: "setreuid", 3: "setresuid", 4: "setgid", 5: "setresgid"}
AT_EMPTY_PATH = 0x1000
O_WRONLY, O_RDWR, O_CREAT, O_TRUNC = 0o1, 0o2, 0o100, 0o1000


def _cstr(raw: bytes, start: int, length: int) -> str:
    chunk = raw[start : start + length]
    end = chunk.find(b"\0")
    return (chunk if end < 0 else chunk[:end]).decode("utf-8", "replace")


def tracefs() -> Path | None:
    """Where the tracing filesystem is mounted (mounting it if it is not)."""
    for path in TRACEFS:
        if (path / "events").is_dir():
            return path
    try:
        import subprocess

        subprocess.run(
            ["mount", "-t", "tracefs", "tracefs", str(TRACEFS[0])], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return TRACEFS[0] if (TRACEFS[0] / "events").is_dir() else None


def _release_compiler_heap() -> None:
    """Give back what clang/LLVM freed after compiling (~25 MiB); their code pages stay
    mapped but are clean, shared and reclaimable."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def kernel_headers() -> str | None:
    """Why BCC cannot compile against this kernel's headers, or None when it can."""
    build = Path("/lib/modules") / os.uname().release / "build"
    if not (build / "Makefile").is_file():
        return f"no kernel headers at {build}"
    return None


def decode_sockaddr(raw: bytes) -> tuple[str, str | None, int | None]:
    """(family, address, port) from the first bytes of a struct sockaddr."""
    if len(raw) < 2:
        return "unknown", None, None
    family = int.from_bytes(raw[0:2], "little")
    if family == socket.AF_INET and len(raw) >= 8:
        return "inet", socket.inet_ntop(socket.AF_INET, raw[4:8]), int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET6 and len(raw) >= 24:
        return (
            "inet6",
            socket.inet_ntop(socket.AF_INET6, raw[8:24]),
            int.from_bytes(raw[2:4], "big"),
        )
    if family == socket.AF_UNIX:
        path = raw[2:].split(b"\0", 1)[0].decode("utf-8", "replace")
        return "unix", path or None, None
    return str(family), None, None


@dataclass
class WorkloadView:
    """What enrichment needs to know about each watched workload."""

    name: str
    home: str
    merged: str | None
    upper: str | None


@dataclass
class SyscallStatus:
    state: str = "stopped"
    detail: str = ""
    tracepoints: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    events: int = 0
    lost: int = 0
    throttled: int = 0


class SyscallMonitor:
    """The eBPF syscall monitor."""

    def __init__(
        self,
        publish: Callable[[ev.Event], None],
        *,
        rate: int = 20000,
        burst: int = 40000,
        ringbuf_pages: int = 4096,
        home_root: str = "/home",
        lost_interval: float = 1.0,
    ) -> None:
        self.publish = publish
        self.rate, self.burst, self.pages = rate, burst, ringbuf_pages
        self.home_root = home_root.rstrip("/") + "/"
        self.lost_interval = lost_interval
        self.status = SyscallStatus()
        self.lineage = Lineage()
        self._bpf: Any = None
        self._raw: list[bytes] = []
        self._workloads: dict[int, WorkloadView] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lost_seen = 0
        self._lost_timer: asyncio.TimerHandle | None = None
        self._boot_offset = time.time() - time.monotonic()

    # --- lifecycle -------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Compile, load and attach; False (and a degraded status) if that fails."""
        self._loop = loop
        fs = tracefs()
        if fs is None:
            return self._degraded("tracefs is not mounted and could not be mounted")
        missing_headers = kernel_headers()
        if missing_headers is not None:
            return self._degraded(missing_headers)
        present = [tp for tp in TRACEPOINTS if (fs / "events" / tp).is_dir()]
        self.status.missing = [tp for tp in TRACEPOINTS if tp not in present]
        cflags = [f"-DRINGBUF_PAGES={self.pages}"]
        cflags += [f"-DHAVE_{tp.split('/')[1]}" for tp in present]
        try:
            from bcc import BPF  # python3-bpfcc; imported only where BPF is used

            self._bpf = BPF(src_file=str(BPF_SOURCE).encode(), cflags=cflags)
            config = self._bpf["config"]
            config[ctypes.c_int(0)] = ctypes.c_uint64(self.rate)
            config[ctypes.c_int(1)] = ctypes.c_uint64(self.burst)
            prefix = self.home_root.encode()[:255]
            table_prefix = self._bpf["open_prefix"]
            leaf = table_prefix.Leaf()
            ctypes.memmove(ctypes.addressof(leaf), prefix, len(prefix))
            table_prefix[ctypes.c_int(0)] = leaf
            config[ctypes.c_int(2)] = ctypes.c_uint64(min(len(prefix), 64))
            table = self._bpf["events"]
            table.open_ring_buffer(self._on_raw)
            loop.add_reader(table.map_fd, self._drain)
        except Exception as exc:  # BCC raises plain Exception for every failure
            self._bpf = None
            return self._degraded(f"BPF program did not load: {exc}")
        _release_compiler_heap()
        self.status.state = "ok"
        self.status.tracepoints = present
        self.status.detail = f"{len(present)} tracepoints attached"
        self._sync_watched()
        self._lost_timer = loop.call_later(self.lost_interval, self._poll_lost)
        self.publish(
            ev.MonitorState(ts=time.time(), monitor="bpf", state="ok", detail=self.status.detail)
        )
        return True

    def _degraded(self, why: str) -> bool:
        self.status.state = "degraded"
        self.status.detail = why
        self.publish(ev.MonitorState(ts=time.time(), monitor="bpf", state="degraded", detail=why))
        return False

    def stop(self) -> None:
        if self._lost_timer is not None:
            self._lost_timer.cancel()
        if self._bpf is not None and self._loop is not None:
            self._loop.remove_reader(self._bpf["events"].map_fd)
            self._bpf.cleanup()
            self._bpf = None
        self.status.state = "stopped"

    def set_workloads(self, views: Mapping[int, WorkloadView]) -> None:
        """Watch exactly these uids (the kernel filters on them)."""
        self._workloads = dict(views)
        self._sync_watched()

    def _sync_watched(self) -> None:
        if self._bpf is None:
            return
        watched = self._bpf["watched"]
        current = {k.value for k in watched}
        for uid in current - set(self._workloads):
            del watched[ctypes.c_uint32(uid)]
        for i, uid in enumerate(sorted(self._workloads)):
            watched[ctypes.c_uint32(uid)] = ctypes.c_uint32(i + 1)

    # --- ring buffer -----------------------------------------------------------------

    def _on_raw(self, ctx: Any, data: Any, size: int) -> int:
        self._raw.append(ctypes.string_at(data, size))
        return 0

    def _drain(self) -> None:
        if self._bpf is None:
            return
        self._bpf.ring_buffer_consume()
        batch, self._raw = self._raw, []
        for raw in batch:
            event = self.decode(raw)
            if event is not None:
                self.publish(event)
        self.status.events += len(batch)

    def _poll_lost(self) -> None:
        if self._bpf is None or self._loop is None:
            return
        # Re-arm first: a failed read must not end the polling for good.
        self._lost_timer = self._loop.call_later(self.lost_interval, self._poll_lost)
        # A per-CPU array reads back as one integer per CPU.
        total = sum(int(v) for v in self._bpf["lost"][ctypes.c_int(0)])
        if total > self._lost_seen:
            delta = total - self._lost_seen
            self._lost_seen = total
            self.status.lost += delta
            self.publish(ev.Lost(ts=time.time(), count=delta))

    # --- decoding ----------------------------------------------------------------------

    def decode(self, raw: bytes) -> ev.Event | None:
        """One kernel event as a typed event, enriched with workload and lineage."""
        kind, pid, _tid, uid, ts_ns, n0, n1, n2, n3, comm_b = HEADER.unpack_from(raw)
        view = self._workloads.get(uid)
        ts = self._boot_offset + ts_ns / 1e9
        comm = comm_b.split(b"\0", 1)[0].decode("utf-8", "replace")
        base: dict[str, Any] = {
            "ts": ts,
            "workload": view.name if view else None,
            "uid": uid,
            "pid": pid,
            "comm": comm,
        }
        if kind == 15:  # fork: lineage only, published for completeness
            self.lineage.fork(int(n0), int(n1), uid, ts, comm)
            return ev.Fork(child=int(n1), ppid=int(n0), **base)
        base["ppid"] = self.lineage.parent(pid)
        if kind in (1, 2):
            filename = _cstr(raw, PATH_OFF, PATH_LEN)
            argv = [a for a in (_cstr(raw, ARGV_OFF + i * ARGLEN, ARGLEN) for i in range(ARGC))]
            argv = argv[: argv.index("")] if "" in argv else argv
            memfd = False
            if kind == 2 and (int(n1) & AT_EMPTY_PATH or filename in ("", None)):
                memfd = self._is_memfd(pid, int(n0))
            elif filename.startswith(("/proc/self/fd/", "/dev/fd/")):
                fd = filename.rsplit("/", 1)[1]
                memfd = fd.isdigit() and self._is_memfd(pid, int(fd))
            path = self._absolute(pid, filename)
            self.lineage.exec(pid, uid, ts, path, comm)
            return ev.Exec(
                filename=path, argv=argv, memfd=memfd, dropped=self._dropped(view, path), **base
            )
        if kind == 3:  # the exec happened: only a memfd one is news (the attempt was seen)
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                return None
            if exe.startswith("/memfd:"):
                return ev.Exec(filename=exe, memfd=True, **base)
            return None
        if kind == 4:
            addrlen = int(n1)
            family, addr, port = decode_sockaddr(raw[PATH_OFF : PATH_OFF + min(addrlen, 28)])
            return ev.Connect(family=family, addr=addr, port=port, **base)
        if kind == 5:
            flags = int(n0)
            path = self._absolute(pid, _cstr(raw, PATH_OFF, PATH_LEN))
            return ev.Open(
                path=path,
                flags=flags,
                write=bool(flags & (O_WRONLY | O_RDWR)),
                create=bool(flags & (O_CREAT | O_TRUNC)),
                other_home=self._other_home(view, path),
                **base,
            )
        if kind == 6:
            return ev.Ptrace(request=int(n0), target_pid=int(n1), **base)
        if kind == 7:
            return ev.Setid(
                call=SETID_CALLS.get(int(n0), str(n0)),
                ids=[int(x) for x in (n1, n2, n3) if x != -1],
                **base,
            )
        if kind == 8:
            return ev.Capset(**base)
        if kind == 9:
            return ev.Mount(
                target=_cstr(raw, PATH_OFF, PATH_LEN),
                fstype=_cstr(raw, ARGV_OFF, ARGLEN),
                source=_cstr(raw, ARGV_OFF + ARGLEN, ARGLEN),
                flags=int(n0),
                **base,
            )
        if kind == 10:
            return ev.Umount(target=_cstr(raw, PATH_OFF, PATH_LEN), **base)
        if kind == 11:
            return ev.Bpf(cmd=int(n0), **base)
        if kind == 12:
            return ev.Module(call="init_module" if n0 == 1 else "finit_module", **base)
        if kind == 13:
            return ev.Namespace(call="unshare", flags=int(n0), **base)
        if kind == 14:
            return ev.Namespace(call="setns", flags=int(n1), **base)
        if kind == 16:
            self.lineage.exit(pid)
            return ev.Exit(**base)
        if kind == 17:
            self.status.throttled += 1
            return ev.Throttled(dropped=int(n0), **base)
        return None

    # --- enrichment --------------------------------------------------------------------

    @staticmethod
    def _absolute(pid: int, path: str) -> str:
        if not path or path.startswith("/"):
            return path
        try:
            return os.path.normpath(os.path.join(os.readlink(f"/proc/{pid}/cwd"), path))
        except OSError:
            return path

    @staticmethod
    def _is_memfd(pid: int, fd: int) -> bool:
        try:
            return os.readlink(f"/proc/{pid}/fd/{fd}").startswith("/memfd:")
        except OSError:
            return False

    @staticmethod
    def _dropped(view: WorkloadView | None, path: str) -> bool:
        """Does the executed file live where the workload writes?"""
        if view is None or not path.startswith("/"):
            return False
        if path.startswith(view.home.rstrip("/") + "/work/"):
            return True
        if view.merged and view.upper and path.startswith(view.merged.rstrip("/") + "/"):
            rel = path[len(view.merged.rstrip("/")) + 1 :]
            return os.path.lexists(os.path.join(view.upper, rel))
        return False

    def _other_home(self, view: WorkloadView | None, path: str) -> str | None:
        if not path.startswith(self.home_root):
            return None
        owner = path[len(self.home_root) :].split("/", 1)[0]
        names = {v.name for v in self._workloads.values()}
        if owner in names and (view is None or owner != view.name):
            return owner
        return None
