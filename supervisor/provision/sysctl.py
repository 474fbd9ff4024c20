"""Kernel settings that syscall tracing relies on, written to a sysctl.d file and applied now.

- `kernel.io_uring_disabled = 2`: io_uring submits work without system calls, so it would
  go around the tracepoints the monitor watches.
- `kernel.unprivileged_bpf_disabled = 2` (1 also satisfies: it is stricter, and sticky).
- `kernel.yama.ptrace_scope = 2`: only CAP_SYS_PTRACE may attach.

A knob this kernel does not have is reported, not fatal.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from ..persist import write_atomic
from .box import Box
from .plan import Plan

#: (key, value to set, values that already satisfy)
KNOBS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("kernel.io_uring_disabled", "2", frozenset({"2"})),
    ("kernel.unprivileged_bpf_disabled", "2", frozenset({"1", "2"})),
    ("kernel.yama.ptrace_scope", "2", frozenset({"2", "3"})),
)
PROC = Path("/proc/sys")


def proc_path(key: str) -> Path:
    return PROC / key.replace(".", "/")


def file_text(present: list[tuple[str, str]]) -> str:
    lines = ["# Written by clawvisor provision: settings syscall tracing relies on."]
    lines += [f"{key} = {value}" for key, value in present]
    return "\n".join(lines) + "\n"


def _write_proc(key: str, value: str) -> None:
    proc_path(key).write_text(value + "\n")


def proc_sys_read_only() -> bool:
    """A container sees the host's kernel settings read-only: they are the host's to set."""
    try:
        return bool(os.statvfs(PROC).f_flag & os.ST_RDONLY)
    except OSError:
        return True


def plan_sysctl(box: Box, plan: Plan) -> None:
    """Plan the sysctl.d file and any running value that differs."""
    if proc_sys_read_only():
        wanted = ", ".join(f"{key} = {value}" for key, value, _ in KNOBS)
        plan.skip("sysctl", f"/proc/sys is read-only here (a container?): set {wanted} on the host")
        return
    present: list[tuple[str, str]] = []
    for key, value, ok in KNOBS:
        path = proc_path(key)
        if not path.exists():
            plan.note("sysctl", f"{key}: this kernel does not have it (not fatal)")
            continue
        present.append((key, value))
        current = path.read_text().strip()
        if current not in ok:
            plan.add("sysctl", f"{key}: {current} -> {value}", partial(_write_proc, key, value))
    target = Path(box.settings.provision.sysctl_file)
    text = file_text(present)
    try:
        have = target.read_text()
    except FileNotFoundError:
        have = None
    if have != text:
        plan.add("sysctl", f"write {target}", partial(write_atomic, target, text.encode(), 0o644))
