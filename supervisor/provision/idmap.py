"""Idmapped bind mounts: the overlay's lower layer shown with the workload as its owner.

Overlayfs copies a file up (the first write to a lower file) only if the writer may write
the lower file, so a root-owned project could be read but never edited through the
overlay. An idmapped mount of the lower directory (kernel 5.12+, `mount_setattr(2)` with
`MOUNT_ATTR_IDMAP`) shows files owned by the directory's owner as owned by the workload,
read-only, without touching a byte on disk; overlayfs then copies up under that owner.

util-linux 2.38 (Debian 12) accepts `X-mount.idmap=` and ignores it without a word, so
this calls the syscalls itself: `open_tree(2)` clones the directory's mount,
`mount_setattr(2)` gives the clone a user namespace's mapping, `move_mount(2)` attaches it.
The namespace is made by a forked child and lives only as long as that: the mount keeps
its own reference.
"""

from __future__ import annotations

import ctypes
import os
import struct
from pathlib import Path

from .plan import ProvisionError

# The generic syscall table: the same numbers on x86_64 and aarch64.
_OPEN_TREE = 428
_MOVE_MOUNT = 429
_MOUNT_SETATTR = 442

_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_OPEN_TREE_CLONE = 1
_OPEN_TREE_CLOEXEC = os.O_CLOEXEC
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_CLONE_NEWUSER = 0x10000000

MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_IDMAP = 0x00100000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(name: str, *args: object) -> int:
    ret = int(_libc.syscall(*args))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return ret


def _user_namespace(uid: tuple[int, int], gid: tuple[int, int]) -> int:
    """An fd of a new user namespace mapping id `x[0]` inside to `x[1]` outside."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child only unshares and waits; it runs no Python it need not
        try:
            os.close(ready_r)
            os.close(done_w)
            ok = _libc.unshare(_CLONE_NEWUSER) == 0
            os.write(ready_w, b"1" if ok else b"0")
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise ProvisionError("cannot make a user namespace for the idmapped mount")
        Path(f"/proc/{pid}/uid_map").write_text(f"{uid[0]} {uid[1]} 1\n")
        Path(f"/proc/{pid}/gid_map").write_text(f"{gid[0]} {gid[1]} 1\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(done_w)
        os.close(ready_r)
        os.waitpid(pid, 0)


def bind_idmapped(source: str, target: Path, uid: tuple[int, int], gid: tuple[int, int]) -> None:
    """Mount `source` read-only on `target`, files owned by `uid[0]`/`gid[0]` on disk shown
    as owned by `uid[1]`/`gid[1]` (everything else as the overflow id, 65534)."""
    userns = _user_namespace(uid, gid)
    tree = -1
    try:
        tree = _syscall(
            "open_tree",
            _OPEN_TREE,
            _AT_FDCWD,
            os.fsencode(source),
            _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC,
        )
        # struct mount_attr { u64 attr_set, attr_clr, propagation, userns_fd; }
        attr = ctypes.create_string_buffer(
            struct.pack(
                "QQQQ",
                MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                0,
                0,
                userns,
            ),
            32,
        )
        _syscall("mount_setattr", _MOUNT_SETATTR, tree, b"", _AT_EMPTY_PATH, attr, 32)
        _syscall(
            "move_mount",
            _MOVE_MOUNT,
            tree,
            b"",
            _AT_FDCWD,
            os.fsencode(str(target)),
            _MOVE_MOUNT_F_EMPTY_PATH,
        )
    except OSError as exc:
        raise ProvisionError(f"idmapped mount of {source} on {target}: {exc}") from exc
    finally:
        if tree >= 0:
            os.close(tree)
        os.close(userns)
