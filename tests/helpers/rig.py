"""Real system resources for tests: users, journald, a clawvisor daemon. All cleaned up."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.prefix) / "bin"
CLAWVISOR = VENV_BIN / "clawvisor"
JOURNAL_SOCKET = "/run/systemd/journal/socket"
JOURNALD = "/lib/systemd/systemd-journald"


# --- users --------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


def create_user(
    prefix: str = "cvt", groups: tuple[str, ...] = (), home: str = "/nonexistent"
) -> User:
    """A real system user with its own group and no login shell (home not created)."""
    name = f"{prefix}{secrets.token_hex(3)}"
    extra = ["--groups", ",".join(groups)] if groups else []
    subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            home,
            "--shell",
            "/usr/sbin/nologin",
            *extra,
            name,
        ],
        check=True,
        capture_output=True,
    )
    pw = pwd.getpwnam(name)
    return User(name=name, uid=pw.pw_uid, gid=pw.pw_gid)


def create_group(prefix: str = "cvtops") -> str:
    """A real group; its name."""
    name = f"{prefix}{secrets.token_hex(3)}"
    subprocess.run(["groupadd", "--system", name], check=True, capture_output=True)
    return name


def delete_group(name: str) -> None:
    subprocess.run(["groupdel", name], check=False, capture_output=True)


def as_user(user: User) -> dict[str, object]:
    """subprocess keyword arguments that run a child as `user` with its real groups."""
    return {
        "user": user.uid,
        "group": user.gid,
        "extra_groups": os.getgrouplist(user.name, user.gid),
    }


def delete_user(user: User) -> None:
    subprocess.run(["userdel", user.name], check=False, capture_output=True)
    subprocess.run(["groupdel", user.name], check=False, capture_output=True)


@contextlib.contextmanager
def as_euid(uid: int, gid: int) -> Iterator[None]:
    """Run a block with another user's effective uid, gid and supplementary groups (the
    kernel records these for a connecting process: SO_PEERCRED, SO_PEERGROUPS)."""
    saved = os.getgroups()
    os.setgroups(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(saved)


def connect_as(path: Path | str, user: User | None, timeout: float = 10.0) -> socket.socket:
    """A Unix stream socket connected to `path` as `user` (root when None)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if user is None:
        sock.connect(str(path))
    else:
        with as_euid(user.uid, user.gid):
            sock.connect(str(path))
    return sock


# --- journald -----------------------------------------------------------------------


#: The trail's journal namespace (the daemon's default `[audit] journal_namespace`).
NAMESPACE = "clawvisor"
NAMESPACE_SOCKET = f"/run/systemd/journal.{NAMESPACE}/socket"
NAMESPACE_STDOUT = f"/run/systemd/journal.{NAMESPACE}/stdout"


def journald_listening(path: str = JOURNAL_SOCKET) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def journalctl(*args: str) -> list[str]:
    """journalctl on the trail: its namespace's journal and the system's (a record is in
    one or the other: a daemon without its namespace's journald writes to the system's)."""
    return ["journalctl", f"--namespace={NAMESPACE}", "--no-pager", *args]


@dataclass
class Journald:
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: A stdout stream held open to the namespace's journald: a namespace instance exits
    #: after 30 s without a message or a stream (systemd would start it again through its
    #: socket; nothing here would), and a slow stretch of the suite is longer than that.
    keepalive: socket.socket | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The system journald, when it was started here."""
        return next((p for p in self.procs if p.args == [JOURNALD]), None)

    @property
    def trail_proc(self) -> subprocess.Popen[bytes] | None:
        """The trail's (namespaced) journald, when it was started here."""
        return next((p for p in self.procs if p.args == [JOURNALD, NAMESPACE]), None)

    def entries(self, **match: str) -> list[dict[str, str]]:
        """The trail's entries matching FIELD=value pairs, oldest first."""
        self.check_alive()
        argv = journalctl("-o", "json", "--all", *(f"{k}={v}" for k, v in match.items()))
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def check_alive(self) -> None:
        """Raise if a journald started here has exited: every lookup after it would be
        empty, and the failures would say nothing of why."""
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited ({proc.returncode})")

    def wait_entries(self, count: int, timeout: float = 10.0, **match: str) -> list[dict[str, str]]:
        """Poll until at least `count` matching entries are readable."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.entries(**match)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


def _start_journald(argv: list[str], socket_path: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not journald_listening(socket_path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{' '.join(argv)} did not start")
        time.sleep(0.05)
    return proc


@contextlib.contextmanager
def journald() -> Iterator[Journald]:
    """The system journald and the trail's namespaced one (as clawvisor.service's
    LogNamespace= would start it): the running ones, else started here, and stopped with
    the journal files they wrote removed (a run writes gigabytes; the next one's lookups
    would crawl through them)."""
    j = Journald()
    before = _journal_files()
    try:
        if not journald_listening():
            j.procs.append(_start_journald([JOURNALD], JOURNAL_SOCKET))
        if not journald_listening(NAMESPACE_SOCKET):
            j.procs.append(_start_journald([JOURNALD, NAMESPACE], NAMESPACE_SOCKET))
        j.keepalive = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        j.keepalive.connect(NAMESPACE_STDOUT)
        # The stream's header: identifier, unit, priority, level prefix, then the
        # forward-to-syslog/kmsg/console switches, each off.
        j.keepalive.sendall(b"clawvisor-tests\n\n6\n0\n0\n0\n0\n")
        yield j
    finally:
        if j.keepalive is not None:
            j.keepalive.close()
        for proc in j.procs:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if j.procs:  # only what journalds of our own wrote, and only files new since
            for path in _journal_files() - before:
                path.unlink(missing_ok=True)


#: Where journald keeps files: volatile, persistent, and per namespace beneath both.
_JOURNAL_ROOTS = (Path("/run/log/journal"), Path("/var/log/journal"))


def _journal_files() -> set[Path]:
    return {p for root in _JOURNAL_ROOTS if root.is_dir() for p in root.rglob("*.journal*")}


def chain_field(chain: str, field: str) -> list[str]:
    """One field of every record of an audit chain in journald (cheap: `-o cat`)."""
    out = subprocess.run(
        journalctl("-o", "cat", f"--output-fields={field}", f"CLAWVISOR_CHAIN={chain}"),
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return out.splitlines()


def audit_verify(daemon: Daemon, *extra: str) -> subprocess.CompletedProcess[str]:
    """`clawvisor audit verify` on a test daemon's chain (its state and log directories)."""
    return subprocess.run(
        [
            str(CLAWVISOR),
            "audit",
            "verify",
            "--state-dir",
            str(daemon.root / "state"),
            "--log-dir",
            str(daemon.root / "log"),
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def final_records(daemon: Daemon) -> dict[str, int]:
    """How many records end each intent (CLAWVISOR_FINAL=1) in a daemon's chain, by
    intent id, from journald and the fallback file alike (a record in both counts once)."""
    out = subprocess.run(
        journalctl(
            "-o",
            "json",
            "--output-fields=CLAWVISOR_INTENT_ID,CLAWVISOR_SEQ",
            f"CLAWVISOR_CHAIN={daemon.chain}",
            "CLAWVISOR_FINAL=1",
        ),
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    seen: dict[int, str] = {}
    for line in out.splitlines():
        if line.strip():
            f = json.loads(line)
            seen[int(f["CLAWVISOR_SEQ"])] = f.get("CLAWVISOR_INTENT_ID", "")
    for rec in daemon.fallback_records():
        if rec.get("final") == 1 and rec.get("chain") == daemon.chain:
            seen[int(rec["seq"])] = str(rec.get("intent_id", ""))
    counts: dict[str, int] = {}
    for rid in seen.values():
        counts[rid] = counts.get(rid, 0) + 1
    return counts


def wait_final(daemon: Daemon, ids: list[str], timeout: float = 20.0) -> dict[str, int]:
    """final_records, once every id in `ids` has one (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = final_records(daemon)
        if all(counts.get(i) for i in ids) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


# --- the daemon ---------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: setpriv options that leave a process CAP_NET_BIND_SERVICE alone after its uid change:
#: Squid as its unit runs it (its ports are below 1024, see supervisor/proxy/ports.py).
BIND_SERVICE = ("--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service")


def shared_tmpdir(prefix: str) -> Path:
    """A temporary directory other users can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@dataclass
class Daemon:
    root: Path
    proc: subprocess.Popen[bytes]
    stderr_path: Path
    workloads: dict[str, User | None] = field(default_factory=dict)
    #: The NOTIFY_SOCKET it was given, still bound and drained by a thread (a full
    #: datagram queue would block the daemon's sd_notify): what it says after READY=1.
    notify: socket.socket | None = None
    said: list[str] = field(default_factory=list)

    def listen_notify(self) -> None:
        sock = self.notify
        assert sock is not None

        def drain() -> None:
            while True:
                try:
                    msg = sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not msg:
                    return
                self.said.append(msg.decode())

        threading.Thread(target=drain, daemon=True).start()

    def notifications(self, until: str, start: int = 0, timeout: float = 10.0) -> list[str]:
        """Messages from index `start` on, once one has the line `until` (or at the timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.said[start:]
            if any(until in m.split("\n") for m in got):
                return got
            time.sleep(0.02)
        return self.said[start:]

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def intents(self) -> Path:
        return self.root / "run" / "intents.sock"

    @property
    def control(self) -> Path:
        return self.root / "run" / "control.sock"

    @property
    def fallback(self) -> Path:
        return self.root / "log" / "audit.jsonl"

    def fallback_records(self) -> list[dict[str, object]]:
        if not self.fallback.exists():
            return []
        return [
            json.loads(line)["record"]
            for line in self.fallback.read_text().splitlines()
            if line.strip()
        ]

    @property
    def chain(self) -> str:
        """The id of its audit chain (from the head it keeps in the state directory)."""
        return json.loads((self.root / "state" / "audit-chain.json").read_text())["chain"]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def restart(self) -> None:
        """Stop this daemon and start it again on the same files, in place."""
        self.stop()
        again = start_daemon(self.root)
        self.proc, self.notify, self.said = again.proc, again.notify, again.said

    def crash_and_restart(self) -> None:
        """SIGKILL this daemon (no drain, no clean-up), then start it again in place."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        if self.notify is not None:
            self.notify.close()
        again = start_daemon(self.root)
        self.proc, self.notify, self.said = again.proc, again.notify, again.said

    def stop(self) -> int:
        stop_process(self.proc)
        if self.notify is not None:
            self.notify.close()
            self.notify = None
        return self.proc.returncode


def write_config(
    root: Path,
    *,
    workloads: dict[str, User | str | None],
    policy: dict[str, str],
    settings: str = "",
    workload_extra: dict[str, str] | None = None,
) -> None:
    """Write etc/ under root; `workload_extra` adds TOML lines to a workload's table."""
    etc = root / "etc"
    (etc / "policy.d").mkdir(parents=True, exist_ok=True)
    lines = []
    for name, user in workloads.items():
        account = user if isinstance(user, str) else ("root" if user is None else user.name)
        lines += [
            f"[workloads.{name}]",
            f'user = "{account}"',
            (workload_extra or {}).get(name, ""),
            "",
        ]
    (etc / "workloads.toml").write_text("\n".join(lines))
    # A group that does not exist: the daemon grants the workload users by ACL.
    base = '[server]\nsocket_group = "cvt-no-such-group"\n'
    text = base + settings if "[server]" not in settings else settings
    if "[verify]" not in text:
        # The standing verify probes as each workload's user: only its own tests run it.
        text += "\n[verify]\ninterval = 0\n"
    if "[monitors]" not in text:
        # Each daemon would compile and attach its own BPF program: only the tests
        # about monitors turn them on.
        text += "\n[monitors]\nenabled = false\n"
    (etc / "clawvisor.toml").write_text(text)
    for name, text in policy.items():
        (etc / "policy.d" / name).write_text(text)


def start_daemon(
    root: Path,
    *,
    wrapper: list[str] | None = None,
    env: dict[str, str] | None = None,
    ready_timeout: float = 20.0,
    exe: Path | None = None,
) -> Daemon:
    """Start `clawvisor serve` (or `exe serve`) on the config under root/etc; wait for READY=1."""
    notify_path = root / "notify.sock"
    with contextlib.suppress(FileNotFoundError):
        notify_path.unlink()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(0.2)
    argv = [
        str(exe or CLAWVISOR),
        "serve",
        "--config-dir",
        str(root / "etc"),
        "--runtime-dir",
        str(root / "run"),
        "--state-dir",
        str(root / "state"),
        "--log-dir",
        str(root / "log"),
    ]
    stderr_path = root / "daemon.stderr"
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "NOTIFY_SOCKET": str(notify_path),
        "LANG": "C.UTF-8",
        **(env or {}),
    }
    with stderr_path.open("wb") as err:
        proc = subprocess.Popen([*(wrapper or []), *argv], stdout=err, stderr=err, env=full_env)
    daemon = Daemon(root=root, proc=proc, stderr_path=stderr_path, notify=notify)
    deadline = time.monotonic() + ready_timeout
    while True:
        if proc.poll() is not None:
            notify.close()
            raise RuntimeError(f"daemon exited {proc.returncode}: {daemon.stderr()}")
        if time.monotonic() > deadline:
            daemon.stop()
            raise RuntimeError(f"daemon not ready: {daemon.stderr()}")
        try:
            msg = notify.recv(4096).decode()
        except TimeoutError:
            continue
        daemon.said.append(msg)
        if "READY=1" in msg.split("\n"):
            daemon.listen_notify()
            return daemon


def reload(daemon: Daemon) -> subprocess.CompletedProcess[str]:
    """`clawvisor reload` against the daemon's control socket, as an operator would."""
    return subprocess.run(
        [str(CLAWVISOR), "reload", "--socket", str(daemon.control)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def cleanup_root(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)


# --- talking to it ------------------------------------------------------------------


def request_line(rid: str, intent: dict[str, object]) -> bytes:
    return json.dumps({"id": rid, "intent": intent}).encode() + b"\n"


def read_lines(sock: socket.socket, count: int, timeout: float = 10.0) -> list[dict]:
    """Read `count` reply lines (fewer if the daemon closes first)."""
    sock.settimeout(timeout)
    buf = b""
    out: list[dict] = []
    while len(out) < count:
        while b"\n" in buf and len(out) < count:
            line, _, buf = buf.partition(b"\n")
            out.append(json.loads(line))
        if len(out) >= count:
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return out


def stop_process(
    proc: subprocess.Popen[str] | subprocess.Popen[bytes], timeout: float = 10.0
) -> None:
    """SIGTERM, and SIGKILL after `timeout` seconds: one of ours ends, by its own pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def call(path: Path, user: User | None, intent: dict[str, object], rid: str = "r1") -> dict:
    """One request over a fresh connection as `user`; the decoded reply."""
    with connect_as(path, user) as sock:
        sock.sendall(request_line(rid, intent))
        replies = read_lines(sock, 1)
    assert replies, "daemon closed the connection without replying"
    return replies[0]


def is_closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the peer closes the connection (reads return EOF) within timeout."""
    sock.settimeout(timeout)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except (TimeoutError, BlockingIOError):
        return False
    except ConnectionResetError:
        return True
