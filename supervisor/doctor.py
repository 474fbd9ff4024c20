"""`clawvisor doctor`: what this host offers clawvisor, one line per check, with the fix.

Checks are read-only probes, except that tracefs is mounted when missing (as the daemon
itself would) and the BPF check compiles and loads the real monitor program once, then
unloads it. When a daemon answers on the control socket, its monitors' states follow:
a monitor that could not start is `degraded` there, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import msgspec

from .audit.journal import JOURNAL_SOCKET, NAMESPACE, socket_path
from .proxy.ports import UNPRIVILEGED

State = Literal["ok", "warn", "fail", "skip"]


class Check(msgspec.Struct, frozen=True):
    """One line of the report: what was checked, how it stands, and how to fix it."""

    name: str
    state: State
    detail: str
    fix: str = ""


MODULES = (
    ("msgspec", "pip install msgspec (make setup does)"),
    ("pyroute2", "pip install pyroute2 (make setup does)"),
    ("nftables", "apt-get install python3-nftables"),
    ("systemd.daemon", "apt-get install python3-systemd"),
    ("bcc", "apt-get install python3-bpfcc bpfcc-tools"),
)

SYSTEM_BUS = "/run/dbus/system_bus_socket"


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _dgram_reachable(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def _stream_reachable(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect(path)
        except OSError:
            return False
    return True


# --- host checks ---------------------------------------------------------------------------


def check_python() -> list[Check]:
    out = [Check("python", "ok", sys.version.split()[0])]
    for name, fix in MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            out.append(Check(f"module {name}", "fail", f"not importable: {exc}", fix))
        else:
            out.append(Check(f"module {name}", "ok", "importable"))
    try:
        from .monitors.inotify_compat import load_pyinotify

        load_pyinotify()
        out.append(Check("module pyinotify", "ok", "importable (asyncore shim in place)"))
    except ImportError as exc:
        out.append(Check("module pyinotify", "fail", str(exc), "pip install pyinotify"))
    return out


def check_kernel() -> list[Check]:
    from .cgroups import CgroupError, cgroup2_root
    from .monitors.syscalls import TRACEPOINTS, kernel_headers, tracefs

    out = [Check("kernel", "ok", os.uname().release)]
    try:
        root = cgroup2_root()
        out.append(Check("cgroup v2", "ok", f"mounted at {root} (freeze, kill)"))
    except CgroupError as exc:
        out.append(
            Check(
                "cgroup v2",
                "fail",
                str(exc),
                "boot with systemd.unified_cgroup_hierarchy=1, or mount -t cgroup2 none "
                "/sys/fs/cgroup",
            )
        )
    fs = tracefs()
    if fs is None:
        out.append(
            Check(
                "tracefs",
                "fail",
                "not mounted and could not be mounted",
                "mount -t tracefs tracefs /sys/kernel/tracing (needs CONFIG_TRACING)",
            )
        )
    else:
        out.append(Check("tracefs", "ok", str(fs)))
        missing = [tp for tp in TRACEPOINTS if not (fs / "events" / tp).is_dir()]
        if missing:
            out.append(
                Check(
                    "tracepoints",
                    "warn",
                    f"{len(TRACEPOINTS) - len(missing)} of {len(TRACEPOINTS)}; "
                    f"this kernel lacks {', '.join(missing)} (syscalls among them are caught "
                    "through raw_syscalls, filtered by number in the kernel)",
                    "a kernel with CONFIG_FTRACE_SYSCALLS and the missing syscalls",
                )
            )
        else:
            out.append(Check("tracepoints", "ok", f"all {len(TRACEPOINTS)}"))
    why = kernel_headers()
    if why is None:
        build = Path("/lib/modules") / os.uname().release / "build"
        out.append(Check("kernel headers", "ok", f"{build} -> {build.resolve()}"))
    else:
        out.append(
            Check(
                "kernel headers",
                "fail",
                why,
                "apt-get install linux-headers-$(uname -r); for a kernel without a "
                "headers package, `make setup` links the installed Debian ones",
            )
        )
    fstypes = _read("/proc/filesystems") or ""
    if any(line.split()[-1] == "overlay" for line in fstypes.splitlines() if line.split()):
        out.append(Check("overlayfs", "ok", "in /proc/filesystems"))
    else:
        out.append(
            Check(
                "overlayfs",
                "fail",
                "not in /proc/filesystems",
                "modprobe overlay (workload overlays cannot be mounted)",
            )
        )
    return out


def check_sysctls() -> list[Check]:
    out = []
    for key, want, why, config in (
        (
            "kernel/unprivileged_bpf_disabled",
            {"1", "2"},
            "workloads could load BPF",
            "CONFIG_BPF_SYSCALL",
        ),
        (
            "kernel/io_uring_disabled",
            {"2"},
            "io_uring goes around the syscall tracepoints",
            "CONFIG_IO_URING (6.6+), or none at all",
        ),
        (
            "kernel/yama/ptrace_scope",
            {"2", "3"},
            "a workload could ptrace its own processes",
            "CONFIG_SECURITY_YAMA",
        ),
    ):
        value = _read(f"/proc/sys/{key}")
        name = "sysctl " + key.replace("/", ".")
        if value is None:
            out.append(
                Check(name, "warn", f"this kernel has no {key}; {why}", f"a kernel with {config}")
            )
        elif value in want:
            out.append(Check(name, "ok", value))
        else:
            out.append(Check(name, "warn", f"{value}: {why}", "clawvisor provision --only sysctl"))
    start = _read("/proc/sys/net/ipv4/ip_unprivileged_port_start")
    if start is not None and start.isdigit() and int(start) < UNPRIVILEGED:
        out.append(
            Check(
                "sysctl net.ipv4.ip_unprivileged_port_start",
                "warn",
                f"{start}: a workload could bind another's proxy port (below 1024)",
                "clawvisor provision --only sysctl",
            )
        )
    elif start is not None:
        out.append(Check("sysctl net.ipv4.ip_unprivileged_port_start", "ok", start))
    watches = _read("/proc/sys/fs/inotify/max_user_watches")
    if watches is not None and int(watches) < 65536:
        out.append(
            Check(
                "inotify watches",
                "warn",
                f"max_user_watches = {watches}: large upper layers may not all be watched",
                "sysctl fs.inotify.max_user_watches=524288",
            )
        )
    elif watches is not None:
        out.append(Check("inotify watches", "ok", f"max_user_watches = {watches}"))
    return out


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    # BCC's compiler writes its diagnostics to fd 2; keep them for the report instead.
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("wb") as f:
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_bpf() -> list[Check]:
    """Compile, load and attach the real monitor program, then unload it."""
    from .monitors.syscalls import SyscallMonitor

    monitor = SyscallMonitor(lambda _event: None)

    async def load() -> bool:
        try:
            return monitor.start(asyncio.get_running_loop())
        finally:
            monitor.stop()

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "bcc.log"
        with _stderr_to(log):
            loaded = asyncio.run(load())
        diagnostics = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    if loaded:
        return [Check("bpf", "ok", "the monitor program compiles, loads and attaches")]
    detail = monitor.status.detail
    hint = next((ln for ln in diagnostics if "error" in ln.lower() or "unable" in ln.lower()), "")
    if hint:
        detail += f" ({hint.strip()[:200]})"
    return [
        Check(
            "bpf",
            "fail",
            detail,
            "check `kernel headers` and `tracefs` above; the kernel needs CONFIG_BPF_SYSCALL "
            "and CONFIG_BPF_EVENTS, and root (CAP_BPF, CAP_PERFMON)",
        )
    ]


def check_nftables() -> list[Check]:
    try:
        from executors.nft import FAMILY, TABLE, Nft, NftError
    except ImportError as exc:
        return [Check("nftables", "fail", str(exc), "apt-get install nftables python3-nftables")]
    try:
        nft = Nft()
        nft.run({"list": {"tables": {}}})
    except (NftError, OSError, ImportError) as exc:
        return [
            Check(
                "nftables",
                "fail",
                f"libnftables does not work here: {exc}",
                "apt-get install nftables python3-nftables; run as root",
            )
        ]
    out = [Check("nftables", "ok", "libnftables JSON API answers")]
    try:
        nft.run({"list": {"table": {"family": FAMILY, "name": TABLE}}})
        out.append(Check("firewall table", "ok", f"{FAMILY} {TABLE} is loaded"))
    except NftError:
        out.append(
            Check(
                "firewall table",
                "warn",
                f"no table {FAMILY} {TABLE}: workloads are not firewalled, counters not read",
                "clawvisor provision",
            )
        )
    return out


def check_services() -> list[Check]:
    out = []
    trail = socket_path(NAMESPACE)
    if _dgram_reachable(trail):
        out.append(Check("trail journal", "ok", f"{trail} (namespace {NAMESPACE}) accepts records"))
    else:
        out.append(
            Check(
                "trail journal",
                "warn",
                f"no journald for the trail's namespace {NAMESPACE!r}: records go to the system "
                "journal, where other logs can rotate them away",
                "run clawvisor.service (LogNamespace=clawvisor starts systemd-journald@clawvisor)",
            )
        )
    if _dgram_reachable(JOURNAL_SOCKET):
        out.append(Check("journald", "ok", f"{JOURNAL_SOCKET} accepts records"))
    else:
        out.append(
            Check(
                "journald",
                "fail",
                f"nothing listens on {JOURNAL_SOCKET}: the audit trail falls back to "
                "LOG_DIR/audit.jsonl",
                "systemctl start systemd-journald (apt-get install systemd)",
            )
        )
    if Path("/run/systemd/system").is_dir():
        version = subprocess.run(
            ["systemctl", "--version"], capture_output=True, text=True, check=False
        ).stdout.split("\n", 1)[0]
        out.append(Check("systemd", "ok", f"booted with {version or 'systemd'}"))
    else:
        out.append(
            Check(
                "systemd",
                "warn",
                "PID 1 is not systemd: units are not installed; nothing restarts the daemon",
                "boot with systemd, or run `clawvisor serve` under your own supervisor",
            )
        )
    if _stream_reachable(SYSTEM_BUS):
        out.append(Check("d-bus", "ok", f"system bus at {SYSTEM_BUS}"))
    else:
        out.append(
            Check(
                "d-bus",
                "warn",
                f"no system bus at {SYSTEM_BUS} (only the desktop approval agent needs D-Bus, "
                "on its session bus)",
                "apt-get install dbus && systemctl start dbus",
            )
        )
    return out


# --- the running daemon ---------------------------------------------------------------------


def check_daemon(control: Path) -> list[Check]:
    from .wire.client import Client

    if not control.exists():
        return [Check("daemon", "skip", f"not running (no {control})")]
    try:
        with Client(control, timeout=10) as client:
            reply, _ = client.control("status")
    except (OSError, ConnectionError) as exc:
        return [
            Check(
                "daemon",
                "fail",
                f"{control}: {exc}",
                "systemctl status clawvisor; journalctl -u clawvisor",
            )
        ]
    if reply.status != "ok" or not isinstance(reply.result, dict):
        message = reply.error.message if reply.error else reply.status
        return [Check("daemon", "fail", f"status: {message}", "journalctl -u clawvisor")]
    result = reply.result
    policy = result.get("policy", {})
    out = [
        Check(
            "daemon",
            "ok",
            f"version {result.get('version')}, {len(result.get('workloads', []))} workloads, "
            f"{policy.get('rules', 0)} rules",
        )
    ]
    if policy.get("error"):
        out.append(
            Check(
                "daemon policy",
                "fail",
                f"deny-all: {policy['error']}",
                "clawvisor policy check, fix the file, clawvisor reload",
            )
        )
    for m in result.get("monitors", []):
        counts = ", ".join(f"{k} {v}" for k, v in m.get("counts", {}).items())
        detail = "; ".join(x for x in (m.get("detail", ""), counts) if x)
        state = m.get("state")
        if state == "ok":
            out.append(Check(f"monitor {m['name']}", "ok", detail))
        elif state == "off":
            out.append(Check(f"monitor {m['name']}", "skip", "turned off in [monitors]"))
        else:
            out.append(
                Check(
                    f"monitor {m['name']}",
                    "fail",
                    f"{state}: {detail}",
                    "fix the host check above that fails, then restart the daemon",
                )
            )
    return out


# --- the report -------------------------------------------------------------------------------


def run_checks(control: Path, *, bpf: bool = True) -> list[Check]:
    """Every check, in report order."""
    groups: list[Callable[[], list[Check]]] = [check_python, check_kernel, check_sysctls]
    if bpf:
        groups.append(check_bpf)
    groups += [check_nftables, check_services, lambda: check_daemon(control)]
    out: list[Check] = []
    for group in groups:
        out += group()
    return out


LABEL = {"ok": "OK  ", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}


def report(control: Path, *, as_json: bool, bpf: bool = True) -> int:
    """Print the checks; 1 when any failed."""
    checks = run_checks(control, bpf=bpf)
    for c in checks:
        if as_json:
            sys.stdout.write(msgspec.json.encode(c).decode() + "\n")
        else:
            fix = f" -- fix: {c.fix}" if c.fix and c.state in ("warn", "fail") else ""
            print(f"{LABEL[c.state]}  {c.name}: {c.detail}{fix}")
    return 1 if any(c.state == "fail" for c in checks) else 0
