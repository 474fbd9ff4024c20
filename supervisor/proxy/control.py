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
import fcntl
import os
import re
import signal
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


def squid_pid(layout: ProxyLayout) -> int | None:
    """The running Squid's pid, from its pid file, if that process is Squid."""
    try:
        pid = int(layout.pid_file.read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm.startswith("squid") else None


#: How long `egress-allow` waits for Squid to accept again after its reconfigure.
RELOAD_WAIT = 10.0
_RECONFIGURING = b"Reconfiguring Squid Cache"
_ACCEPTING = re.compile(rb"Accepting .* connections at \S+ local=\S+:(\d+) ")


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def accepting_again(layout: ProxyLayout, offset: int, ports: Collection[int], wait: float) -> bool:
    """Whether Squid's log, past `offset`, shows a reconfigure begun and then every one of
    `ports` accepting again, within `wait` seconds. A reconfigure logged past `offset`
    began after the caller wrote its files, so it read them."""
    deadline = time.monotonic() + wait
    missing, begun, buf = set(ports), False, b""
    while True:
        try:
            with layout.cache_log.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        offset += len(chunk)
        *lines, buf = (buf + chunk).split(b"\n")
        for line in lines:
            if _RECONFIGURING in line:
                begun, missing = True, set(ports)
            elif begun and (m := _ACCEPTING.search(line)):
                missing.discard(int(m.group(1)))
        if begun and not missing:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


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
        print(
            f"the allow is written, but the proxy did not accept connections again "
            f"within {RELOAD_WAIT:.0f} s of re-reading it",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
