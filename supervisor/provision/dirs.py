"""Each workload's home and tiers, with owners, modes and ACLs, checked after applying.

The home is owned by root (mode 0700 plus an ACL giving the workload r-x), so the
workload can read it but not rename what is in it: a workload that owned its home could
move the root-owned `config/` aside and put its own in its place.

    home/           root 0700 + ACL workload r-x
      work/         the workload's own, 0700 (its writable space)
      agent/        root 0750 + ACL workload r-x (also the default ACL)
      ops/          root 0700: the workload can neither list nor read it
      config/       root 0750 + ACL workload r-x; files root 0640 + ACL workload r--
      shared/       where the overlay is mounted
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..posix_acl import XATTR, decode_acl, encode_acl
from .box import Box, uid_of
from .plan import Plan, ProvisionError

XATTR_DEFAULT = "system.posix_acl_default"
ROOT = "root"


@dataclass(frozen=True)
class Want:
    """What one path must look like. `owner` is "root" or the workload's user name."""

    path: Path
    owner: str
    mode: int
    acl: int | None = None  # permission bits for the workload's user, if any
    default_acl: int | None = None
    is_file: bool = False


def wanted(box: Box, name: str) -> list[Want]:
    """Every path provisioning manages for one workload, parents first."""
    user = box.workloads[name].user
    home = box.home(name)
    out = [
        Want(home, ROOT, 0o700, acl=0o5),
        Want(home / "work", user, 0o700),
        Want(home / "agent", ROOT, 0o750, acl=0o5, default_acl=0o5),
        Want(home / "ops", ROOT, 0o700),
        Want(home / "config", ROOT, 0o750, acl=0o5),
    ]
    config = home / "config"
    if config.is_dir():
        out += [
            Want(p, ROOT, 0o640, acl=0o4, is_file=True)
            for p in sorted(config.iterdir())
            if p.is_file() and not p.is_symlink()
        ]
    if box.workloads[name].overlay is not None:
        root = box.overlay_root(name)
        out += [
            Want(root.parent, ROOT, 0o700),
            Want(root, ROOT, 0o700),
            Want(root / "upper", user, 0o700),
            Want(root / "work", ROOT, 0o700),
        ]
        # Mount points are checked only while nothing is mounted on them (a mount shows
        # its own root's owner and mode).
        if not os.path.ismount(root / "lower"):
            out.append(Want(root / "lower", ROOT, 0o700))
        if not os.path.ismount(box.merged(name)):
            out.append(Want(box.merged(name), ROOT, 0o755))
    dest = box.workloads[name].destination
    if dest is not None:
        out.append(Want(Path(dest), ROOT, 0o755))
    return out


def _acl_blob(mode: int, uid: int, perm: int | None) -> bytes | None:
    return None if perm is None else encode_acl(mode, {uid: perm})


def _read(path: Path, attr: str) -> bytes | None:
    try:
        return os.getxattr(path, attr, follow_symlinks=False)
    except OSError:
        return None


def _ids(owner: str, user: str) -> tuple[int, int] | None:
    """(uid, gid) of `owner` ("root" or the workload's user), None if the user is missing."""
    if owner == ROOT:
        return 0, 0
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


def differences(w: Want, user: str) -> list[str]:
    """What is wrong with `w.path` now (empty: it is as wanted)."""
    try:
        st = w.path.lstat()
    except FileNotFoundError:
        return ["missing"]
    if stat.S_ISLNK(st.st_mode):
        return ["is a symlink"]
    uid = uid_of(user)
    ids = _ids(w.owner, user)
    if uid is None or ids is None:
        return ["owner does not exist yet"]
    wrong = []
    if (st.st_uid, st.st_gid) != ids:
        wrong.append(f"owner {st.st_uid}:{st.st_gid}")
    want_acl = _acl_blob(w.mode, uid, w.acl)
    want_mode = w.mode if w.acl is None else (w.mode & 0o707) | ((w.mode | w.acl << 3) & 0o070)
    if stat.S_IMODE(st.st_mode) != want_mode:
        wrong.append(f"mode {stat.S_IMODE(st.st_mode):04o} (want {want_mode:04o})")
    have = _read(w.path, XATTR)
    if (have and decode_acl(have)) != (want_acl and decode_acl(want_acl)):
        wrong.append("ACL")
    if not w.is_file:
        want_default = _acl_blob(w.mode, uid, w.default_acl)
        have_default = _read(w.path, XATTR_DEFAULT)
        if (have_default and decode_acl(have_default)) != (
            want_default and decode_acl(want_default)
        ):
            wrong.append("default ACL")
    return wrong


def make(w: Want, user: str) -> None:
    """Bring `w.path` to what is wanted, then read it back to check."""
    uid = uid_of(user)
    ids = _ids(w.owner, user)
    if uid is None or ids is None:
        raise ProvisionError(f"user {user} does not exist")
    if not w.path.exists():
        if w.is_file:
            raise ProvisionError(f"{w.path} vanished")
        # A missing parent (a fresh home_root, say) is made root-owned 0755; an existing
        # one is not ours to change.
        w.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        w.path.mkdir(mode=0o700)
    if w.path.is_symlink():
        raise ProvisionError(f"{w.path} is a symlink; refusing to follow it")
    os.chown(w.path, *ids, follow_symlinks=False)
    os.chmod(w.path, w.mode, follow_symlinks=False)
    blob = _acl_blob(w.mode, uid, w.acl)
    if blob is None:
        with contextlib.suppress(OSError):
            os.removexattr(w.path, XATTR, follow_symlinks=False)
    else:
        os.setxattr(w.path, XATTR, blob, follow_symlinks=False)
    if not w.is_file:
        default = _acl_blob(w.mode, uid, w.default_acl)
        if default is None:
            with contextlib.suppress(OSError):
                os.removexattr(w.path, XATTR_DEFAULT, follow_symlinks=False)
        else:
            os.setxattr(w.path, XATTR_DEFAULT, default, follow_symlinks=False)
    left = differences(w, user)
    if left:
        raise ProvisionError(
            f"{w.path} still wrong after applying: {', '.join(left)} "
            "(does the filesystem support POSIX ACLs?)"
        )


def plan_dirs(box: Box, plan: Plan) -> None:
    """Plan every managed path of every workload."""
    for name, spec in box.workloads.items():
        for w in wanted(box, name):
            wrong = differences(w, spec.user)
            if wrong:
                plan.add("dirs", f"{w.path}: {', '.join(wrong)}", partial(make, w, spec.user))
