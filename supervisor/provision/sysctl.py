"""Kernel settings the monitors and the proxy rely on, written to a sysctl.d file and
applied now.

- `kernel.io_uring_disabled = 2`: io_uring submits work without system calls, so it would
  go around the tracepoints the monitor watches.
- `kernel.unprivileged_bpf_disabled = 2` (1 also satisfies: it is stricter, and sticky).
- `kernel.yama.ptrace_scope = 2`: only CAP_SYS_PTRACE may attach.
- `net.ipv4.ip_unprivileged_port_start = 1024` (or more): the proxy's ports are below it,
  so that no workload can bind one (proxy/ports.py).

A knob this kernel does not have is reported, not fatal.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

from ..persist import write_atomic
from ..proxy.ports import UNPRIVILEGED
from .box import Box
from .plan import Plan


def _at_least(low: int) -> Callable[[str], bool]:
    return lambda value: value.isdigit() and int(value) >= low


#: (key, value to set, which values already satisfy)
KNOBS: tuple[tuple[str, str, Callable[[str], bool]], ...] = (
    ("kernel.io_uring_disabled", "2", {"2"}.__contains__),
    ("kernel.unprivileged_bpf_disabled", "2", {"1", "2"}.__contains__),
    ("kernel.yama.ptrace_scope", "2", {"2", "3"}.__contains__),
    ("net.ipv4.ip_unprivileged_port_start", str(UNPRIVILEGED), _at_least(UNPRIVILEGED)),
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
        if not ok(current):
            plan.add("sysctl", f"{key}: {current} -> {value}", partial(_write_proc, key, value))
    target = Path(box.settings.provision.sysctl_file)
    text = file_text(present)
    try:
        have = target.read_text()
    except FileNotFoundError:
        have = None
    if have != text:
        plan.add("sysctl", f"write {target}", partial(write_atomic, target, text.encode(), 0o644))
