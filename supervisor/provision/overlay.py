"""Overlay mounts: the host directory `lower` read-only, writes going to the workload's upper.

Mounted now with mount(8) (argv, no shell), `nosuid,nodev`; made persistent by a
generated systemd mount unit (see units.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from .box import Box
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


def overlay_options(box: Box, name: str) -> str:
    spec = box.workloads[name].overlay
    assert spec is not None
    root = box.overlay_root(name)
    return f"lowerdir={spec.lower},upperdir={root / 'upper'},workdir={root / 'work'}"


def _wanted(box: Box, name: str, m: Mounted | None) -> bool:
    spec = box.workloads[name].overlay
    assert spec is not None
    root = box.overlay_root(name)
    return (
        m is not None
        and m.fstype == "overlay"
        and {"nosuid", "nodev"} <= m.options
        and m.super_options.get("lowerdir") == spec.lower
        and m.super_options.get("upperdir") == str(root / "upper")
        and m.super_options.get("workdir") == str(root / "work")
    )


def mount(box: Box, name: str) -> None:
    merged = box.merged(name)
    if mounted_at(merged) is not None:
        run(["umount", str(merged)])
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
    """Unmount a workload's overlay if it is mounted."""
    if mounted_at(box.merged(name)) is not None:
        run(["umount", str(box.merged(name))])
