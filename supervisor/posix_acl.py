"""POSIX access ACLs written as the kernel's xattr blob, so granting one uid needs no setfacl.

Format (include/uapi/linux/posix_acl_xattr.h): a u32 version (2), then entries of
u16 tag, u16 perm, u32 id, sorted by tag then id.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

XATTR = "system.posix_acl_access"
_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_UNDEFINED = 0xFFFFFFFF
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")


def encode_acl(
    mode: int, users: Mapping[int, int] | None = None, groups: Mapping[int, int] | None = None
) -> bytes:
    """The xattr blob for `mode`'s owner/group/other bits plus named user/group entries.

    `users` and `groups` map ids to permission bits (4=r, 2=w, 1=x).
    """
    users = users or {}
    groups = groups or {}
    entries: list[tuple[int, int, int]] = [(_USER_OBJ, (mode >> 6) & 7, _UNDEFINED)]
    entries += [(_USER, perm & 7, uid) for uid, perm in sorted(users.items())]
    entries.append((_GROUP_OBJ, (mode >> 3) & 7, _UNDEFINED))
    entries += [(_GROUP, perm & 7, gid) for gid, perm in sorted(groups.items())]
    if users or groups:
        mask = (mode >> 3) & 7
        for perm in (*users.values(), *groups.values()):
            mask |= perm & 7
        entries.append((_MASK, mask, _UNDEFINED))
    entries.append((_OTHER, mode & 7, _UNDEFINED))
    return _HEADER.pack(_VERSION) + b"".join(_ENTRY.pack(*e) for e in entries)


def decode_acl(blob: bytes) -> list[tuple[int, int, int]]:
    """(tag, perm, id) entries of an ACL xattr blob."""
    (version,) = _HEADER.unpack_from(blob)
    if version != _VERSION:
        raise ValueError(f"unknown ACL xattr version {version}")
    body = blob[_HEADER.size :]
    return [_ENTRY.unpack_from(body, i) for i in range(0, len(body), _ENTRY.size)]


def grant_users(path: Path, mode: int, uids: Iterable[int], perm: int) -> None:
    """Set `path`'s access ACL to `mode` plus `perm` for each uid (replacing any ACL)."""
    blob = encode_acl(mode, {uid: perm for uid in uids})
    os.chmod(path, mode)
    os.setxattr(path, XATTR, blob)
