"""Overlay mounts: the host directory `lower` read-only, writes going to the workload's upper.

The overlay's lower layer is not `lower` itself but an idmapped, read-only bind mount of
it (idmap.py) in the workload's root-only overlay directory: files owned by `lower`'s
owner are the workload's there, so it can edit them (overlayfs copies them up into its
upper layer) while the host's copy is never written. The overlay is mounted with mount(8)
(argv, no shell), `nosuid,nodev`; at boot, the generated `clawvisor-overlays.service`
runs `provision --only overlay` again (units.py): the idmapped mount has no fstab form
that util-linux 2.38 honours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from .box import Box, gid_of, uid_of
from .idmap import bind_idmapped
from .plan import Plan, ProvisionError, run

MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class Mounted:
    """One line of /proc/self/mountinfo that matters here."""

    fstype: str
    options: frozenset[str]
    super_options: dict[str, str]


def _unescape(text: str) -> str:
    return (
        text.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
    )


def mounted_at(path: Path) -> Mounted | None:
    """What is mounted at `path`, if anything (the topmost mount)."""
    found = None
    for line in MOUNTINFO.read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        if _unescape(fields[4]) != str(path):
            continue
        supers = {}
        for opt in fields[sep + 3].split(","):
            key, _, value = opt.partition("=")
            supers[key] = value
        found = Mounted(
            fstype=fields[sep + 1], options=frozenset(fields[5].split(",")), super_options=supers
        )
    return found


def lower_view(box: Box, name: str) -> Path:
    """Where the idmapped view of the workload's lower directory is mounted."""
    return box.overlay_root(name) / "lower"


def overlay_options(box: Box, name: str) -> str:
    root = box.overlay_root(name)
    return f"lowerdir={lower_view(box, name)},upperdir={root / 'upper'},workdir={root / 'work'}"


def _idmap(box: Box, name: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """(uid, gid) pairs: `lower`'s owner on disk -> the workload's user and group."""
    spec = box.workloads[name]
    assert spec.overlay is not None
    uid, gid = uid_of(spec.user), gid_of(spec.user)
    if uid is None or gid is None:
        raise ProvisionError(f"workload {name}: no user or group {spec.user} for its overlay")
    st = os.stat(spec.overlay.lower)
    return (st.st_uid, uid), (st.st_gid, gid)


def _view_wanted(box: Box, name: str) -> bool:
    spec = box.workloads[name].overlay
    assert spec is not None
    view = lower_view(box, name)
    m = mounted_at(view)
    if m is None or not {"ro", "nosuid", "nodev", "idmapped"} <= m.options:
        return False
    try:
        seen, real = os.stat(view), os.stat(spec.lower)
        (_, uid), (_, gid) = _idmap(box, name)
    except (OSError, ProvisionError):
        return False
    same_dir = (seen.st_dev, seen.st_ino) == (real.st_dev, real.st_ino)
    return same_dir and (seen.st_uid, seen.st_gid) == (uid, gid)


def _wanted(box: Box, name: str, m: Mounted | None) -> bool:
    root = box.overlay_root(name)
    return (
        m is not None
        and m.fstype == "overlay"
        and {"nosuid", "nodev"} <= m.options
        and m.super_options.get("lowerdir") == str(lower_view(box, name))
        and m.super_options.get("upperdir") == str(root / "upper")
        and m.super_options.get("workdir") == str(root / "work")
        and _view_wanted(box, name)
    )


def mount(box: Box, name: str) -> None:
    """(Re)mount the idmapped lower view and the overlay over it."""
    spec = box.workloads[name].overlay
    assert spec is not None
    merged, view = box.merged(name), lower_view(box, name)
    if mounted_at(merged) is not None:
        run(["umount", str(merged)])
    while mounted_at(view) is not None:
        run(["umount", str(view)])
    view.mkdir(mode=0o700, exist_ok=True)
    uid, gid = _idmap(box, name)
    bind_idmapped(spec.lower, view, uid, gid)
    run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"nosuid,nodev,{overlay_options(box, name)}",
            str(merged),
        ]
    )
    if not _wanted(box, name, mounted_at(merged)):
        raise ProvisionError(f"{merged}: mounted, but not as asked")


def plan_overlay(box: Box, plan: Plan) -> None:
    """Plan mounting each workload's overlay that is not mounted as wanted."""
    for name, spec in sorted(box.workloads.items()):
        if spec.overlay is None:
            continue
        if not os.path.isdir(spec.overlay.lower):
            raise ProvisionError(
                f"workload {name}: overlay lower {spec.overlay.lower} is not a directory"
            )
        merged = box.merged(name)
        m = mounted_at(merged)
        if not _wanted(box, name, m):
            what = "mount" if m is None else "remount"
            plan.add(
                "overlay",
                f"{what} overlay of {spec.overlay.lower} on {merged}",
                partial(mount, box, name),
            )


def unmount(box: Box, name: str) -> None:
    """Unmount a workload's overlay and its lower view, where mounted."""
    for path in (box.merged(name), lower_view(box, name)):
        while mounted_at(path) is not None:
            run(["umount", str(path)])
