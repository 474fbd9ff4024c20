"""Load bpf/monitor.c with BCC, feed its ring buffer into the event loop.

The ring buffer's map fd is pollable, so it sits on the asyncio loop with add_reader. A
wake-up drains it (ring.py reads the mapping itself; BCC's consume where it cannot) and
decodes (decode.py), enriches and publishes the batch; then, while records keep coming,
the ring is read every POLL seconds instead: the kernel wakes a reader that has caught
up on every record, and at tens of thousands a second those wake-ups cost more than the
records. Lost events (counted in the
kernel) are read periodically and published as Lost events. A program that cannot load
(no BPF, no headers) leaves the monitor degraded, never the daemon down.

Which syscalls are watched, the record layout and the kinds are declared in abi.py; a
syscall whose tracepoint this kernel lacks is caught through raw_syscalls, and `status`
names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import abi, btf, ring
from . import events as ev
from .decode import Decode, WorkloadView
from .sockaddr import decode_sockaddr

__all__ = ["SyscallMonitor", "SyscallStatus", "WorkloadView", "decode_sockaddr"]

log = logging.getLogger("clawvisor.monitors")


def _bpf_source() -> Path:
    """bpf/monitor.c of a source tree, else the copy an installed build carries."""
    in_tree = Path(__file__).resolve().parents[2] / "bpf" / "monitor.c"
    if in_tree.is_file():
        return in_tree
    return Path(sys.prefix) / "share" / "clawvisor" / "bpf" / "monitor.c"


BPF_SOURCE = _bpf_source()
#: Every tracepoint the monitor would attach where it exists (doctor lists the missing).
TRACEPOINTS = (
    *(f"syscalls/sys_enter_{n}" for n in abi.SYSCALLS),
    *abi.TASK_TRACEPOINTS,
)
TRACEFS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
#: How often a busy ring is read (an alert waits at most this long for its record).
POLL = 0.005
#: Besides the homes root, read-only opens of these are events (system secrets).
SECRET_PREFIXES = (
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/pam.d/",
    "/etc/ssh/ssh_host_",
    "/root/",
    "/etc/security/opasswd",
)


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


def cgroup_id(path: str) -> int | None:
    """A cgroup v2 directory's id (its inode number), as bpf_get_current_cgroup_id says."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


@dataclass
class SyscallStatus:
    state: str = "stopped"
    detail: str = ""
    tracepoints: list[str] = field(default_factory=list)
    #: Syscalls whose own tracepoints this kernel lacks (caught through raw_syscalls).
    missing: list[str] = field(default_factory=list)
    events: int = 0
    lost: int = 0
    #: Records a decoder failed on (each also a `lost` event, reason `undecodable`).
    undecoded: int = 0
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
        self.prefixes = (self.home_root, *SECRET_PREFIXES)[: abi.NPREFIX]
        self.lost_interval = lost_interval
        self.status = SyscallStatus()
        self.decoder = Decode(self.home_root, self.prefixes)
        self._bpf: Any = None
        self._raw: list[bytes] = []
        self._ring: ring.RingReader | None = None
        self._poll: asyncio.TimerHandle | None = None
        self._workloads: dict[int, WorkloadView] = {}  # uid -> view
        self._index: dict[str, int] = {}  # workload -> its index in the kernel maps
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lost_seen = 0
        self._lost_timer: asyncio.TimerHandle | None = None

    @property
    def lineage(self) -> Any:
        return self.decoder.lineage

    # --- lifecycle -------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Compile, load and attach; False (and a degraded status) if that fails."""
        return self._activate(loop, self._load())

    async def start_async(self, loop: asyncio.AbstractEventLoop) -> bool:
        """`start`, with the compile (seconds of clang) in a thread: the loop goes on
        serving intents meanwhile. A daemon thread, not the loop's executor: a stop
        during the compile need not wait for clang (the kernel drops a program whose
        process is gone)."""
        done: asyncio.Future[str | None] = loop.create_future()

        def deliver(failed: str | None) -> None:
            if not done.done():
                done.set_result(failed)

        def compile_and_attach() -> None:
            failed = self._load()
            with contextlib.suppress(RuntimeError):  # the loop is gone: so is the daemon
                loop.call_soon_threadsafe(deliver, failed)

        threading.Thread(target=compile_and_attach, name="bpf-load", daemon=True).start()
        return self._activate(loop, await done)

    def _load(self) -> str | None:
        """Compile, load and attach the program (no loop needed); why not, or None."""
        fs = tracefs()
        if fs is None:
            return "tracefs is not mounted and could not be mounted"
        missing_headers = kernel_headers()
        if missing_headers is not None:
            return missing_headers
        events = fs / "events"
        present = [n for n in abi.SYSCALLS if (events / "syscalls" / f"sys_enter_{n}").is_dir()]
        raw = {n for n in abi.SYSCALLS if n not in present}
        tasks = [tp for tp in abi.TASK_TRACEPOINTS if (events / tp).is_dir()]
        self.status.missing = sorted(raw)
        source = abi.prelude() + f'#line 1 "{BPF_SOURCE}"\n' + BPF_SOURCE.read_text()
        source += abi.glue(raw)
        cflags = [f"-DRINGBUF_PAGES={self.pages}"]
        cflags += [f"-DHAVE_{tp.split('/')[1]}" for tp in tasks]
        exit_format = events / "sched" / "sched_process_exit" / "format"
        with contextlib.suppress(OSError):
            if "group_dead" in exit_format.read_text():  # 6.16 and later say it themselves
                cflags.append("-DEXIT_GROUP_DEAD")
        cwd_note = ""
        compat = False
        try:
            cflags += ["-DCWD_WALK", *(f"-D{k}={v}" for k, v in btf.offsets().items())]
            compat = platform.machine() == "x86_64"  # TS_COMPAT is x86's
        except (OSError, btf.BtfError) as exc:
            cwd_note = f"; a first-seen process's cwd is read from /proc (no BTF: {exc})"
            cwd_note += "; 32-bit syscalls are not told apart"
        if raw:
            cflags.append("-DRAW_WANTED")
        if compat:
            cflags.append("-DCOMPAT_WATCH")
        attached: list[str] = []
        bpf: Any = None
        try:
            from bcc import BPF  # python3-bpfcc; imported only where BPF is used

            # Kept local until whole: the loop (a reload's _sync_watched) only ever sees
            # a program that is loaded and attached.
            bpf = BPF(text=source.encode(), cflags=cflags)
            for name in present:
                bpf.attach_tracepoint(tp=f"syscalls:sys_enter_{name}", fn_name="on_enter")
                attached.append(f"syscalls/sys_enter_{name}")
                if abi.SYSCALLS[name]:
                    bpf.attach_tracepoint(tp=f"syscalls:sys_exit_{name}", fn_name="on_exit")
                    attached.append(f"syscalls/sys_exit_{name}")
            # RAW_TRACEPOINT_PROBEs: BCC attached them as it loaded.
            if raw or compat:
                attached.append("raw_syscalls/sys_enter")
            if raw:
                attached.append("raw_syscalls/sys_exit")
            attached += tasks  # TRACEPOINT_PROBEs: BCC attaches them itself
            config = bpf["config"]
            config[ctypes.c_int(0)] = ctypes.c_uint64(self.rate)
            config[ctypes.c_int(1)] = ctypes.c_uint64(self.burst)
            table = bpf["read_prefixes"]
            for i, prefix in enumerate(self.prefixes):
                leaf = table.Leaf()
                text = prefix.encode()[: abi.PREFIXLEN]
                leaf.len = len(text)
                offset = type(leaf).s.offset  # leaf.s reads back as bytes: write in place
                ctypes.memmove(ctypes.addressof(leaf) + offset, text, len(text))
                table[ctypes.c_int(i)] = leaf
            events = bpf["events"]
            if ring.supported():
                self._ring = ring.RingReader(events.map_fd, events.max_entries)
            else:
                events.open_ring_buffer(self._on_raw)
        except Exception as exc:  # BCC raises plain Exception for every failure
            if bpf is not None:
                with contextlib.suppress(Exception):
                    bpf.cleanup()
            return f"BPF program did not load: {exc}"
        _release_compiler_heap()
        self._bpf = bpf
        self.status.tracepoints = attached
        self.status.detail = f"{len(attached)} tracepoints attached"
        self.status.detail += cwd_note
        if raw:
            self.status.detail += (
                f"; syscalls without their own tracepoint, caught through raw_syscalls: "
                f"{', '.join(sorted(raw))}"
            )
        return None

    def _activate(self, loop: asyncio.AbstractEventLoop, failed: str | None) -> bool:
        """On the loop: read the ring buffer, count losses, say how it stands."""
        self._loop = loop
        if failed is not None or self._bpf is None:
            return self._degraded(failed or "BPF program did not load")
        loop.add_reader(self._bpf["events"].map_fd, self._woken)
        self.status.state = "ok"
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
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        if self._bpf is not None and self._loop is not None:
            self._loop.remove_reader(self._bpf["events"].map_fd)
            if self._ring is not None:
                self._ring.close()
                self._ring = None
            self._bpf.cleanup()
            self._bpf = None
        self.status.state = "stopped"

    def set_workloads(self, views: Mapping[int, WorkloadView]) -> None:
        """Watch exactly these uids, and their cgroups (the kernel filters on them)."""
        self._workloads = dict(views)
        for v in views.values():
            if v.name not in self._index:
                self._index[v.name] = max(self._index.values(), default=0) + 1
        self.decoder.set_views({self._index[v.name]: v for v in views.values()})
        self._sync_watched()

    def _sync_watched(self) -> None:
        if self._bpf is None:
            return
        try:
            self._sync_maps()
        finally:
            # What each CPU remembers as unwatched was found under the old sets: forgotten
            # (also after a failure part way: some entries may have changed). Slot 1 is
            # ours alone (the kernel raises slot 0): a read and a write are enough.
            gen = self._bpf["generation"]
            gen[ctypes.c_int(1)] = ctypes.c_uint64(gen[ctypes.c_int(1)].value + 1)

    def _sync_maps(self) -> None:
        wanted = {uid: self._index[v.name] for uid, v in self._workloads.items()}
        uids = self._bpf["watched_uids"]
        for key in [k.value for k in uids]:
            if key not in wanted:
                del uids[ctypes.c_uint32(key)]
        for uid, idx in wanted.items():
            uids[ctypes.c_uint32(uid)] = ctypes.c_uint32(idx)
        cgroups = self._bpf["watched_cgroups"]
        want_cg: dict[int, int] = {}
        for v in self._workloads.values():
            for path in v.cgroups:
                cg = cgroup_id(path)
                if cg is not None:
                    want_cg[cg] = self._index[v.name]
        for key in [k.value for k in cgroups]:
            if key not in want_cg:
                del cgroups[ctypes.c_uint64(key)]
        for cg, idx in want_cg.items():
            cgroups[ctypes.c_uint64(cg)] = ctypes.c_uint32(idx)
        # A process watched by lineage stays so only while its workload is configured.
        live = set(wanted.values())
        tgids = self._bpf["watched_tgids"]
        for key, leaf in list(tgids.items()):
            if leaf.value not in live:
                with contextlib.suppress(KeyError):
                    del tgids[key]

    # --- ring buffer -----------------------------------------------------------------

    def _on_raw(self, ctx: Any, data: Any, size: int) -> int:
        self._raw.append(ctypes.string_at(data, size))
        return 0

    def _woken(self) -> None:
        """The first record into an idle ring: read it, then poll while more come."""
        assert self._loop is not None and self._bpf is not None
        self._loop.remove_reader(self._bpf["events"].map_fd)
        self._poll = self._loop.call_later(POLL, self._tick)
        self._drain()

    def _tick(self) -> None:
        self._poll = None
        if self._bpf is None or self._loop is None:
            return
        busy = True
        try:
            busy = self._drain() > 0
        finally:
            # Scheduled whatever the drain did: a failure there must not stop the reading.
            if busy:
                self._poll = self._loop.call_later(POLL, self._tick)
            else:
                # Quiet: back to wake-ups. The fd polls readable while the ring holds
                # data, so a record written since the read above wakes us at once.
                self._loop.add_reader(self._bpf["events"].map_fd, self._woken)

    def _drain(self) -> int:
        """Read, decode and publish what the ring holds; how many records it held."""
        if self._bpf is None:
            return 0
        if self._ring is not None:
            batch = self._ring.read()
        else:
            self._bpf.ring_buffer_consume()
            batch, self._raw = self._raw, []
        decode, publish, extra = self.decoder.decode, self.publish, self.decoder.extra
        throttled = abi.Kind.THROTTLED
        failed: dict[str | None, int] = {}
        for raw in batch:
            try:
                event = decode(raw)
            except Exception:  # one record's fault, never the rest of the batch's
                view = self.decoder.current
                name = view.name if view is not None else None
                failed[name] = failed.get(name, 0) + 1
                extra.clear()
                if not self.status.undecoded:
                    log.exception("a monitor record could not be decoded (kind %d)", raw[0])
                self.status.undecoded += 1
                continue
            if event is not None:
                if raw[0] == throttled:
                    self.status.throttled += 1
                publish(event)
            if extra:
                for derived in extra:
                    publish(derived)
                extra.clear()
        for name, count in failed.items():
            publish(ev.Lost(ts=time.time(), workload=name, count=count, reason="undecodable"))
        self.status.events += len(batch)
        return len(batch)

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

    def decode(self, raw: bytes) -> ev.Event | None:
        """One kernel record as a typed event (tests and benchmarks use this)."""
        return self.decoder.decode(raw)
