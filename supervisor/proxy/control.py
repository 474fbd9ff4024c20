"""The proxy's files on disk and its reload: what provisioning and `egress-allow` share.

Provisioning writes `inputs.json` (ports, each workload's static allows, resolvers, the
refused networks, the SNI helper); `egress-allow` adds to `live.json`. Either way the
whole configuration is rendered again from both, written where it changed, and Squid is
told to re-read it (SIGHUP to the pid in its pid file, checked to be Squid's: Squid
keeps its open connections across a reconfigure). Runs in provisioning and in executor
child processes, never on the daemon's loop.

A reconfigure closes Squid's listening ports while it re-reads (about 70 ms here; a
connection then is refused), so `egress-allow` replies only once Squid's log says it
accepts on every port again: the name works when the agent is told it does.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import signal
import stat
import sys
import time
from collections.abc import Collection, Iterator
from pathlib import Path

import msgspec

from ..persist import write_atomic
from .allowlist import Allowed, LiveAllows, current
from .squid_conf import ProxyLayout, render


class ProxyInputs(msgspec.Struct):
    """What provisioning decided for the proxy; `live.json` adds to `static`."""

    ports: dict[str, int]
    static: dict[str, list[Allowed]]
    resolvers: list[str]
    refused: list[str]
    #: Ports a name allowed without one may be reached on.
    default_ports: list[int] = msgspec.field(default_factory=lambda: [443])


def inputs_path(layout: ProxyLayout) -> Path:
    return layout.dir / "inputs.json"


def live_path(layout: ProxyLayout) -> Path:
    return layout.dir / "live.json"


def load_inputs(layout: ProxyLayout) -> ProxyInputs | None:
    try:
        return msgspec.json.decode(inputs_path(layout).read_bytes(), type=ProxyInputs)
    except FileNotFoundError:
        return None


def load_live(layout: ProxyLayout) -> LiveAllows:
    try:
        return msgspec.json.decode(live_path(layout).read_bytes(), type=LiveAllows)
    except FileNotFoundError:
        return LiveAllows()


@contextlib.contextmanager
def locked(layout: ProxyLayout) -> Iterator[None]:
    """One writer of the proxy's files at a time (provisioning, concurrent allows)."""
    layout.dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(layout.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def wanted_files(
    layout: ProxyLayout, inputs: ProxyInputs, live: LiveAllows, now: float
) -> dict[Path, str]:
    """Every proxy file as it must be now (expired live allows left out)."""
    allows = {
        name: current(inputs.static.get(name, []), live.workloads.get(name, []), now)
        for name in inputs.ports
    }
    return render(layout, inputs.ports, allows, inputs.resolvers, inputs.refused)


def write_changed(files: dict[Path, str]) -> list[Path]:
    """Write the files whose content differs; the paths written."""
    written = []
    for path, text in files.items():
        try:
            if path.read_text() == text:
                continue
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text.encode(), 0o644)
        written.append(path)
    return written


def open_proxys_file(path: Path) -> int:
    """Open a file in the proxy's own directory for reading, as root: no symlink, no FIFO
    or device (the proxy's user owns the directory and could put one there). OSError else."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


def squid_pid(layout: ProxyLayout) -> int | None:
    """The running Squid's pid, from its pid file, if that process is Squid."""
    try:
        fd = open_proxys_file(layout.pid_file)
        try:
            text = os.pread(fd, 64, 0).decode("ascii", "replace")
        finally:
            os.close(fd)
        pid = int(text.split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm.startswith("squid") else None


#: How long `egress-allow` waits for Squid to accept again after its reconfigure.
RELOAD_WAIT = 10.0
# Squid's own lines begin with its timestamp; a workload's request headers, which Squid
# dumps into the same log on a forwarding loop, are lines of their own without it.
_PREFIX = rb"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: kid\d+)?\| "
_RECONFIGURING = re.compile(_PREFIX + rb"Reconfiguring Squid Cache")
_ACCEPTING = re.compile(_PREFIX + rb"Accepting [^|]* connections at \S+ local=\S+:(\d+) ")
#: Read at most this much of the log per look; a longer line is none of Squid's own.
_LOG_READ = 1 << 16
_MAX_LINE = 1 << 12


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class _Lines:
    """Whole lines of a log from an offset, capped: a line longer than _MAX_LINE is
    skipped to its end (its tail must not pass for a line of its own)."""

    def __init__(self, offset: int) -> None:
        self.offset, self.buf, self.skipping = offset, b"", False

    def more(self, fd: int) -> list[bytes]:
        chunk = os.pread(fd, _LOG_READ, self.offset)
        self.offset += len(chunk)
        *lines, self.buf = (self.buf + chunk).split(b"\n")
        if self.skipping and lines:
            lines, self.skipping = lines[1:], False
        if len(self.buf) > _MAX_LINE:
            self.buf, self.skipping = b"", True
        return lines


def accepting_again(layout: ProxyLayout, offset: int, ports: Collection[int], wait: float) -> bool:
    """Whether Squid's log, past `offset`, shows a reconfigure begun and then every one of
    `ports` accepting again, within `wait` seconds. A reconfigure logged past `offset`
    began after the caller wrote its files, so it read them."""
    deadline = time.monotonic() + wait
    missing, begun, log = set(ports), False, _Lines(offset)
    fd: int | None = None
    try:
        while True:
            if fd is None:
                with contextlib.suppress(FileNotFoundError):
                    fd = open_proxys_file(layout.cache_log)
            for line in log.more(fd) if fd is not None else ():
                if _RECONFIGURING.match(line):
                    begun, missing = True, set(ports)
                elif begun and (m := _ACCEPTING.match(line)):
                    missing.discard(int(m.group(1)))
            if begun and not missing:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
    except OSError:
        return False
    finally:
        if fd is not None:
            os.close(fd)


def reload(layout: ProxyLayout, ports: Collection[int] = (), wait: float = 0.0) -> bool:
    """Ask Squid to re-read its configuration; False if it is not running, or (with
    `ports` and `wait`) if it does not accept on every one of them again in time."""
    pid = squid_pid(layout)
    if pid is None:
        return False
    offset = _log_size(layout.cache_log)
    os.kill(pid, signal.SIGHUP)
    return not ports or wait <= 0 or accepting_again(layout, offset, ports, wait)


def refresh(layout: ProxyLayout, now: float | None = None) -> tuple[list[Path], bool]:
    """Render from inputs and live allows, write what changed, reload if anything did."""
    now = time.time() if now is None else now
    with locked(layout):
        inputs = load_inputs(layout)
        if inputs is None:
            return [], False
        live = load_live(layout)
        kept = LiveAllows(
            {
                n: [a for a in allows if a.expires is None or a.expires > now]
                for n, allows in live.workloads.items()
                if n in inputs.ports
            }
        )
        if kept != live:
            write_atomic(live_path(layout), msgspec.json.encode(kept), 0o600)
        written = write_changed(wanted_files(layout, inputs, kept, now))
    return written, bool(written) and reload(layout)


def allow(layout: ProxyLayout, workload: str, domain: str, port: int, ttl: int) -> float:
    """Add (or extend) a live allow, written but not yet applied (`reload` applies it);
    its expiry. Raises LookupError when the workload does not go out through the proxy."""
    now = time.time()
    with locked(layout):
        inputs = load_inputs(layout)
        if inputs is None or workload not in inputs.ports:
            raise LookupError(f"workload {workload} does not go out through the proxy")
        live = load_live(layout)
        mine = [a for a in live.workloads.get(workload, []) if (a.domain, a.port) != (domain, port)]
        expires = now + ttl
        mine.append(Allowed(domain, port, expires))
        live.workloads[workload] = sorted(mine)
        write_atomic(live_path(layout), msgspec.json.encode(live), 0o600)
        write_changed(wanted_files(layout, inputs, live, now))
    return expires


def main(argv: list[str]) -> int:
    """`python -m supervisor.proxy.control allow DIR WORKLOAD DOMAIN PORT TTL` (the
    egress-allow executor's child; PORT 0: the default ports)."""
    if len(argv) != 6 or argv[0] != "allow":
        print("usage: allow DIR WORKLOAD DOMAIN PORT TTL", file=sys.stderr)
        return 2
    _, where, workload, domain, port, ttl = argv
    layout = ProxyLayout(Path(where))
    inputs = load_inputs(layout)
    ports = [int(port)] if int(port) else (inputs.default_ports if inputs else [443])
    try:
        for p in ports:
            allow(layout, workload, domain, p, int(ttl))
    except LookupError as exc:
        print(f"the proxy's list was not updated: {exc}", file=sys.stderr)
        return 1
    # One reconfigure for all of them: each closes every workload's port for a moment.
    listening = inputs.ports.values() if inputs else ()
    if squid_pid(layout) is None:
        print("the allow is written; the proxy is not running", file=sys.stderr)
    elif not reload(layout, listening, RELOAD_WAIT):
        # Written and signalled, so in force as far as clawvisor can make it: an error
        # here would audit as refused an allow that is (or soon is) in effect.
        print(
            f"the allow is in force, but the proxy did not say it accepts again "
            f"within {RELOAD_WAIT:.0f} s of re-reading it",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
