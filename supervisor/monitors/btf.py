"""Member offsets of kernel structs, read from the running kernel's BTF
(/sys/kernel/btf/vmlinux).

BCC compiles against whatever headers /lib/modules/$(uname -r)/build holds, and here
those are another kernel's: a struct read through them would read the wrong bytes. The
one walk bpf/monitor.c does through kernel structs (a first-seen process's cwd, dentry
by dentry) takes its offsets from here instead, passed in as -D flags; without BTF the
walk is left out and the cwd is read from /proc as before.
"""

from __future__ import annotations

import struct
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")
MAGIC = 0xEB9F
STRUCT, UNION = 4, 5
#: Bytes after the 12-byte common header, by kind: (fixed, per vlen entry).
_EXTRA = {
    1: (4, 0),  # int
    3: (12, 0),  # array
    4: (0, 12),  # struct
    5: (0, 12),  # union
    6: (0, 8),  # enum
    13: (0, 8),  # func_proto
    14: (4, 0),  # var
    15: (0, 12),  # datasec
    17: (4, 0),  # decl_tag
    19: (0, 12),  # enum64
}
#: What the cwd walk, the test for a 32-bit syscall and (on kernels whose exit
#: tracepoint does not say so) the test for a process's last thread read: struct ->
#: members (a dotted path goes through the member's own struct; an anonymous struct or
#: union on the way is searched through).
WANTED = {
    "task_struct": ("fs", "signal", "thread_info"),
    "signal_struct": ("live",),
    "thread_info": ("status",),
    "fs_struct": ("pwd", "root"),
    "path": ("mnt", "dentry"),
    "dentry": ("d_parent", "d_name"),
    "qstr": ("len", "name"),
    "vfsmount": ("mnt_root",),
    "mount": ("mnt_parent", "mnt_mountpoint", "mnt"),
}


class BtfError(Exception):
    pass


def _parse(data: bytes) -> tuple[dict[str, int], dict[int, list[tuple[str, int, int]]]]:
    """(struct/union name -> type id, type id -> [(member, type id, byte offset)])."""
    magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data)
    if magic != MAGIC:
        raise BtfError("not BTF")
    type_off, type_len, str_off, _str_len = struct.unpack_from("<IIII", data, 8)
    types = hdr_len + type_off
    strings = hdr_len + str_off

    def name(off: int) -> str:
        end = data.index(b"\0", strings + off)
        return data[strings + off : end].decode()

    by_name: dict[str, int] = {}
    members: dict[int, list[tuple[str, int, int]]] = {}
    pos, end, tid = types, types + type_len, 1
    while pos < end:
        name_off, info, _size = struct.unpack_from("<III", data, pos)
        kind, vlen, bitfields = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        pos += 12
        if kind in (STRUCT, UNION):
            found = []
            for i in range(vlen):
                m_name, m_type, m_off = struct.unpack_from("<III", data, pos + 12 * i)
                bits = m_off & 0xFFFFFF if bitfields else m_off
                found.append((name(m_name) if m_name else "", m_type, bits // 8))
            members[tid] = found
            if name_off:
                by_name.setdefault(name(name_off), tid)
        fixed, per = _EXTRA.get(kind, (0, 0))
        pos += fixed + per * vlen
        tid += 1
    return by_name, members


def _offset(members: dict[int, list[tuple[str, int, int]]], tid: int, want: str) -> int | None:
    for m_name, m_type, off in members.get(tid, []):
        if m_name == want:
            return off
        if not m_name and m_type in members:  # an anonymous struct or union
            inner = _offset(members, m_type, want)
            if inner is not None:
                return off + inner
    return None


def offsets(path: Path = VMLINUX) -> dict[str, int]:
    """OFF_<STRUCT>_<MEMBER> for every member the walk reads; BtfError if any is missing."""
    by_name, members = _parse(path.read_bytes())
    out = {}
    for struct_name, wanted in WANTED.items():
        tid = by_name.get(struct_name)
        if tid is None:
            raise BtfError(f"no struct {struct_name} in {path}")
        for member in wanted:
            off = _offset(members, tid, member)
            if off is None:
                raise BtfError(f"no {struct_name}.{member} in {path}")
            out[f"OFF_{struct_name.upper()}_{member.upper()}"] = off
    return out
