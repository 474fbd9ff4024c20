"""The interface between bpf/monitor.c and its loader, declared once, here.

The event record (`RawEvent`), the event kinds (`Kind`), the sizes, and which syscalls
are watched (`SYSCALLS`) are Python; the loader renders them into C above bpf/monitor.c
(`prelude()`: `struct event`, `#define K_EXEC 1`, ...) and generates the tracepoint glue
below it (`glue()`), so the two sides cannot drift apart. BCC's own tools share a layout
the same way in the other direction (a C struct read back through ctypes); rendering it
from ctypes keeps the one declaration where the decoders are.

Each watched syscall has one handler in C, `enter_NAME(a0..a5)`, taking the raw syscall
arguments. One program (`on_enter`) dispatches to them by syscall number and is attached
to `syscalls/sys_enter_NAME` wherever this kernel has that tracepoint; a syscall whose
tracepoint is missing is caught through `raw_syscalls/sys_enter`, filtered by number in
the kernel (this kernel has no `init_module` tracepoints, for one). Outcomes come from
`sys_exit_NAME` (or `raw_syscalls/sys_exit`) through `finish()`. One program for all
keeps compiling and loading to a second or two, where one per tracepoint took eight.
"""

from __future__ import annotations

import ctypes
import struct
from enum import IntEnum
from typing import Any

PATHLEN = 256  # a path as passed (bytes, NUL included)
COMMLEN = 16
NUMS = 6  # per-kind numbers: fds, flags, ids, modes...
ARGC, ARGLEN = 8, 64  # exec: the first ARGC arguments, each cut at ARGLEN
ENVC, ENVLEN = 4, 64  # exec: up to ENVC environment entries that matter (LD_*, HISTFILE, *_proxy)
ENVSCAN = 64  # environment entries looked at, from the first
DATALEN = ARGC * ARGLEN + ENVC * ENVLEN  # exec arguments and environment; a second path
GIDS = 16  # setgroups: the first GIDS groups asked for
NPREFIX, PREFIXLEN = 8, 64  # in-kernel read filter: up to NPREFIX path prefixes
CWD_SLOTS, CWD_SLOT = 16, 64  # a first-seen process's cwd: up to 16 names of < 64 bytes
CWD_STEPS = CWD_SLOTS + 8  # the walk's steps: its names and the mounts it crosses


class Kind(IntEnum):
    """What a record from the kernel is; the C side sees these as K_<NAME>."""

    EXEC = 1
    CONNECT = 2
    BIND = 3
    LISTEN = 4
    SOCKET = 5
    OPEN = 6
    PTRACE = 7
    SETID = 8
    CAPSET = 9
    MOUNT = 10
    UMOUNT = 11
    BPF = 12
    MODULE = 13
    UNSHARE = 14
    SETNS = 15
    FORK = 16
    EXIT = 17
    THROTTLED = 18
    RENAME = 19
    LINK = 20
    SYMLINK = 21
    UNLINK = 22
    MKNOD = 23
    CHMOD = 24
    CHOWN = 25
    UTIMES = 26
    MEMFD = 27
    DUP = 28
    CLOSE = 29
    CHDIR = 30
    COMM = 31
    PIPE = 32
    CWD = 33
    COMPAT = 34


class SetidCall(IntEnum):
    """Which call of the id family a K_SETID record is (its num[0]); C: SC_<NAME>."""

    SETUID = 1
    SETREUID = 2
    SETRESUID = 3
    SETGID = 4
    SETREGID = 5
    SETRESGID = 6
    SETFSUID = 7
    SETFSGID = 8
    SETGROUPS = 9


#: Watched syscalls: name -> whether its exit is traced (the outcome). Handlers that
#: need no outcome (close: only the fd table cares) send at entry.
SYSCALLS: dict[str, bool] = {
    "execve": True,
    "execveat": True,
    "open": True,
    "openat": True,
    "openat2": True,
    "creat": True,
    "connect": True,
    "bind": True,
    "listen": True,
    "socket": True,
    "ptrace": True,
    "setuid": True,
    "setreuid": True,
    "setresuid": True,
    "setgid": True,
    "setregid": True,
    "setresgid": True,
    "setfsuid": True,
    "setfsgid": True,
    "setgroups": True,
    "capset": True,
    "mount": True,
    "umount": True,
    "bpf": True,
    "init_module": True,
    "finit_module": True,
    "unshare": True,
    "setns": True,
    "rename": True,
    "renameat": True,
    "renameat2": True,
    "link": True,
    "linkat": True,
    "symlink": True,
    "symlinkat": True,
    "unlink": True,
    "unlinkat": True,
    "rmdir": True,
    "mknod": True,
    "mknodat": True,
    "chmod": True,
    "fchmod": True,
    "fchmodat": True,
    "fchmodat2": True,
    "chown": True,
    "fchown": True,
    "lchown": True,
    "fchownat": True,
    "utimensat": True,
    "memfd_create": True,
    "dup": True,
    "dup2": True,
    "dup3": True,
    "fcntl": True,
    "close": False,
    "chdir": True,
    "fchdir": True,
    "pipe": True,
    "pipe2": True,
}
#: Tracepoints named after the syscall's definition where its number is another name.
NR_NAMES = {"umount": "umount2"}
#: Scheduler and task tracepoints: lineage, the exec that happened, renames.
TASK_TRACEPOINTS = (
    "sched/sched_process_exec",
    "sched/sched_process_exit",
    "task/task_newtask",
    "task/task_rename",
)


class RawEvent(ctypes.Structure):
    """One record in the ring buffer (struct event on the C side)."""

    _fields_ = (
        ("kind", ctypes.c_uint32),
        ("pid", ctypes.c_uint32),  # thread group id (what user space calls the pid)
        ("tid", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),  # real uid and gid when the syscall began
        ("gid", ctypes.c_uint32),
        ("workload", ctypes.c_uint32),  # index of the watched workload (never 0)
        ("ts", ctypes.c_uint64),  # ktime ns, at entry
        ("result", ctypes.c_int64),  # the syscall's return value (-errno on failure)
        ("num", ctypes.c_int64 * NUMS),
        ("comm", ctypes.c_char * COMMLEN),
        ("path", ctypes.c_char * PATHLEN),
        ("data", ctypes.c_char * DATALEN),  # argv and env, a second path, gids
    )


DATA_OFF: int = RawEvent.data.offset
#: Kinds whose record uses `data` (argv and env, a second path, gids, mount strings, a
#: new name). The others are sent without it: a third of the size, so the ring buffer
#: holds three times as many of them and user space copies a third.
DATA_KINDS = frozenset(
    {Kind.EXEC, Kind.SETID, Kind.MOUNT, Kind.COMM, Kind.RENAME, Kind.LINK, Kind.SYMLINK, Kind.CWD}
)
EVENT_SIZE = ctypes.sizeof(RawEvent)

_C_TYPES: dict[Any, str] = {
    ctypes.c_uint32: "u32",
    ctypes.c_int32: "s32",
    ctypes.c_uint64: "u64",
    ctypes.c_int64: "s64",
    ctypes.c_char: "char",
}


def _c_field(name: str, ctype: Any) -> str:
    dims = ""
    while hasattr(ctype, "_length_"):
        dims += f"[{ctype._length_}]"
        ctype = ctype._type_
    return f"    {_C_TYPES[ctype]} {name}{dims};"


def defines() -> dict[str, int]:
    """Every constant the C side uses, by its C name."""
    out = {
        "PATHLEN": PATHLEN,
        "COMMLEN": COMMLEN,
        "NUMS": NUMS,
        "ARGC": ARGC,
        "ARGLEN": ARGLEN,
        "ENVC": ENVC,
        "ENVLEN": ENVLEN,
        "ENVSCAN": ENVSCAN,
        "DATALEN": DATALEN,
        "GIDS": GIDS,
        "NPREFIX": NPREFIX,
        "PREFIXLEN": PREFIXLEN,
        "CWD_SLOTS": CWD_SLOTS,
        "CWD_SLOT": CWD_SLOT,
        "CWD_STEPS": CWD_STEPS,
    }
    out |= {f"K_{k.name}": k.value for k in Kind}
    out |= {f"SC_{c.name}": c.value for c in SetidCall}
    return out


def prelude() -> str:
    """The C declarations bpf/monitor.c builds on, rendered from this module."""
    lines = ["// Rendered from supervisor/monitors/abi.py: do not edit here."]
    lines += [f"#define {name} {value}" for name, value in defines().items()]
    lines.append("struct event {")
    lines += [_c_field(name, ctype) for name, ctype in RawEvent._fields_]
    lines.append("};")
    uses = " || ".join(f"(k) == K_{k.name}" for k in sorted(DATA_KINDS))
    lines.append(f"#define USES_DATA(k) ({uses})")
    return "\n".join(lines) + "\n"


def _case(n: str) -> str:
    """A dispatch case: the syscall's number to its enter_NAME handler."""
    return (
        f"    case __NR_{NR_NAMES.get(n, n)}: return enter_{n}(a[0], a[1], a[2], a[3], a[4], a[5]);"
    )


def glue(raw: set[str]) -> str:
    """The programs the loader attaches: `on_enter` (to every sys_enter_NAME of SYSCALLS)
    and `on_exit` (to every sys_exit_NAME with an outcome) dispatch by syscall number;
    when `raw` names syscalls whose own tracepoints this kernel lacks, two raw
    tracepoint programs on raw_syscalls' sys_enter and sys_exit let only those through."""

    cases = "\n".join(_case(n) for n in SYSCALLS if n not in raw)
    out = f"""// Rendered from supervisor/monitors/abi.py: the syscall programs.
// Every syscall tracepoint has the number at offset 8 and six 8-byte argument slots
// from 16; the slots past a syscall's own arguments are read but never used.
#define ARGS(ctx) u64 a[6] = {{}}; bpf_probe_read_kernel(a, sizeof(a), (char *)(ctx) + 16)
int on_enter(void *ctx) {{
    if (known_unwatched())
        return 0;  // most syscalls of the box: one array lookup
    int nr = *(int *)((char *)ctx + 8);
    ARGS(ctx);
    switch (nr) {{
{cases}
    }}
    return 0;
}}
int on_exit(void *ctx) {{
    if (known_unwatched())
        return 0;  // nothing held, no cwd wanted: those are for watched tasks only
#ifdef CWD_WALK
    cwd_at_exit(*(int *)((char *)ctx + 8));
#endif
    return finish(*(long *)((char *)ctx + 16));
}}
"""
    return out + _raw_glue(raw)


def _raw_glue(raw: set[str]) -> str:
    """raw_syscalls' sys_enter and sys_exit run for every syscall of every process. As
    tracepoints through perf events they cost each syscall of the box a fifth more time
    (measured here); as raw tracepoint programs the kernel calls them directly, with the
    registers: the arguments and, at exit, the number are read from those. sys_enter
    is compiled in where `raw` names syscalls (RAW_WANTED) or 32-bit syscalls can be told
    (COMPAT_WATCH); sys_exit only for the former."""
    raw_cases = "\n".join(_case(n) for n in sorted(raw))
    wanted = " || ".join(f"nr == __NR_{NR_NAMES.get(n, n)}" for n in sorted(raw)) or "0"
    exits = (
        " || ".join(f"nr == __NR_{NR_NAMES.get(n, n)}" for n in sorted(raw) if SYSCALLS[n]) or "0"
    )
    return f"""#if defined(RAW_WANTED) || defined(COMPAT_WATCH)
#if defined(bpf_target_x86)
#define SYSCALL_ARGS(regs, a) do {{ \\
    bpf_probe_read_kernel(&(a)[0], 8, &(regs)->di); \\
    bpf_probe_read_kernel(&(a)[1], 8, &(regs)->si); \\
    bpf_probe_read_kernel(&(a)[2], 8, &(regs)->dx); \\
    bpf_probe_read_kernel(&(a)[3], 8, &(regs)->r10); \\
    bpf_probe_read_kernel(&(a)[4], 8, &(regs)->r8); \\
    bpf_probe_read_kernel(&(a)[5], 8, &(regs)->r9); }} while (0)
#define SYSCALL_NR(regs) (&(regs)->orig_ax)
#elif defined(bpf_target_arm64)
#define SYSCALL_ARGS(regs, a) bpf_probe_read_kernel((a), 48, &(regs)->regs[0])
#define SYSCALL_NR(regs) (&(regs)->syscallno)
#else
#error "raw_syscalls: no register layout for this architecture"
#endif
RAW_TRACEPOINT_PROBE(sys_enter) {{
    long nr = (long)ctx->args[1];
    if (known_unwatched())
        return 0;  // most syscalls of the box: one array lookup
#ifdef COMPAT_WATCH
    if (compat_syscall(nr))
        return 0;  // i386 numbering: nothing below applies to it
#endif
#ifdef RAW_WANTED
    if (!({wanted}))
        return 0;
    struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
    u64 a[6] = {{}};
    SYSCALL_ARGS(regs, a);
    switch (nr) {{
{raw_cases}
    }}
#endif
    return 0;
}}
#endif
#ifdef RAW_WANTED
RAW_TRACEPOINT_PROBE(sys_exit) {{
    if (known_unwatched())
        return 0;
    struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
    long nr = -1;
    bpf_probe_read_kernel(&nr, sizeof(nr), SYSCALL_NR(regs));
    if (!({exits}))
        return 0;
#ifdef CWD_WALK
    cwd_at_exit(nr);
#endif
    return finish((long)ctx->args[1]);
}}
#endif
"""


_STRUCT_CODES: dict[Any, str] = {
    ctypes.c_uint32: "I",
    ctypes.c_int32: "i",
    ctypes.c_uint64: "Q",
    ctypes.c_int64: "q",
    ctypes.c_char: "s",
}


def _header_format(keep: frozenset[str] | None = None, nums: int = NUMS) -> str:
    """A struct format for every field before `path`, from RawEvent (so decoding the
    header is one unpack, and still follows the one declaration). With `keep`, the
    other fields (and the numbers past the first `nums`) are skipped as padding."""
    fmt = "<"
    for name, ctype in RawEvent._fields_:
        if name == "path":
            break
        size = ctypes.sizeof(ctype)
        if keep is not None and name not in keep:
            fmt += f"{size}x"
        elif name == "num":
            pad = (NUMS - nums) * (size // NUMS)
            fmt += f"{nums}q" + (f"{pad}x" if pad else "")
        elif name == "comm":
            fmt += f"{size}s"
        else:
            fmt += _STRUCT_CODES[ctype]
    return fmt


#: kind, pid, tid, uid, gid, workload, ts, result, num[0..NUMS-1], comm
HEADER = struct.Struct(_header_format())
#: An open's header (most records are opens): pid, uid, workload, ts, result, flags,
#: dirfd, comm. Fewer fields to unpack and no tuples to slice.
OPEN_HEADER = struct.Struct(
    _header_format(frozenset({"pid", "uid", "workload", "ts", "result", "num", "comm"}), 2)
)
PATH_OFF: int = RawEvent.path.offset
assert HEADER.size == OPEN_HEADER.size == PATH_OFF, "a header format covers all before path"
# The kind is a little-endian u32 below 256: a record's first byte is its kind.
assert max(Kind) < 256
assert RawEvent.data.offset == PATH_OFF + PATHLEN, "path and data follow each other"
assert CWD_SLOTS * CWD_SLOT <= PATHLEN + DATALEN and CWD_SLOTS & (CWD_SLOTS - 1) == 0
