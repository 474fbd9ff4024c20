"""A real systemd to test under: a Debian 12 rootfs (debootstrap, cached under build/nspawn)
booted with `systemd-nspawn --boot --register=no --keep-unit --private-network`.

Each box runs on an overlay of the cached rootfs (so the cache stays clean), in its own
network namespace (so nothing it does touches the host's firewall), and is entered with
nsenter into all of its namespaces. Stopping it powers it off, waits for its nspawn by
pid, and unmounts and removes everything it made.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "build" / "nspawn"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# Everything the tests need inside, so the box needs no network: the runtime packages of
# `make install` (RUNTIME_APT in the Makefile), make to run it, and the usual tools.
PACKAGES = (
    "systemd,systemd-sysv,dbus,python3,python3-venv,python3-systemd,python3-nftables,"
    "nftables,python3-bpfcc,acl,iproute2,make,procps,socat,util-linux,passwd,ca-certificates,"
    "squid-openssl,openssl,systemd-journal-remote,stunnel4,openssh-server,openssh-client"
)
CLEAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}


def rootfs() -> Path:
    """The cached rootfs for PACKAGES (made with debootstrap the first time, ~1 min)."""
    key = hashlib.sha256(f"{SUITE} {MIRROR} {PACKAGES}".encode()).hexdigest()[:12]
    path = CACHE / f"rootfs-{key}"
    if (path / "etc" / "os-release").exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="rootfs-tmp-", dir=CACHE))
    try:
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", SUITE, str(tmp), MIRROR],
            check=True,
            capture_output=True,
        )
        # A fixed machine id keeps journald's files in one place across boots.
        (tmp / "etc" / "machine-id").write_text(hashlib.md5(key.encode()).hexdigest() + "\n")
        tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def source_files() -> list[str]:
    """The repository's files as a clean clone has them (tracked and untracked, not ignored)."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    return [p for p in out.decode().split("\0") if p]


def copy_tree(files: list[str], src: Path, dst: Path) -> None:
    """Copy `files` (relative) from src to dst, keeping modes and times (make compares them)."""
    for rel in files:
        s = src / rel
        if not s.is_file():
            continue
        d = dst / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(s, d)


def build(tree: Path) -> tuple[Path, Path]:
    """`make wheels deb` in a source tree: its wheels directory and its .deb."""
    subprocess.run(
        ["make", "-s", "-C", str(tree), "wheels", "deb"], check=True, capture_output=True
    )
    [deb] = sorted((tree / "build").glob("clawvisor_*_amd64.deb"))
    return tree / "build" / "wheels", deb


class Box:
    """One booted container."""

    def __init__(self, name: str, work: Path, leader: int, nspawn: subprocess.Popen[bytes]):
        self.name, self.work, self.leader, self.nspawn = name, work, leader, nspawn

    @property
    def root(self) -> Path:
        return self.work / "root"

    def run(
        self, *argv: str, check: bool = False, timeout: float = 300, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """argv inside the box, as root, in all its namespaces, with a clean environment."""
        return subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", "-r", "-w", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            env=CLEAN_ENV,
            input=input,
        )

    def popen(self, *argv: str) -> subprocess.Popen[str]:
        """argv inside the box, running on (pipes on stdin and stdout); the caller waits."""
        return subprocess.Popen(
            ["nsenter", "-t", str(self.leader), "-a", "-r", "-w", "--", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=CLEAN_ENV,
        )

    def ok(self, *argv: str, timeout: float = 300) -> str:
        """Run argv; fail the test with its output unless it exits 0; its stdout."""
        proc = self.run(*argv, timeout=timeout)
        assert proc.returncode == 0, f"{argv} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def prop(self, unit: str, name: str) -> str:
        return self.ok("systemctl", "show", "-P", name, unit).strip()

    def wait_for(self, predicate, timeout: float = 60, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")


def _leader(nspawn: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """The container's PID 1, as seen from here: the child of systemd-nspawn."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if nspawn.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited {nspawn.returncode}")
        children: list[str] = []
        for task in Path(f"/proc/{nspawn.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                children += (task / "children").read_text().split()
        for child in children:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                    return int(child)
        time.sleep(0.1)
    raise RuntimeError("the container's systemd did not appear")


@contextlib.contextmanager
def booted(
    files: dict[str, Path] | None = None,
    binds: dict[str, Path] | None = None,
    *,
    name: str = "",
    netns: str | None = None,
    texts: dict[str, str] | None = None,
) -> Iterator[Box]:
    """Boot a box on an overlay of the cached rootfs; `files` are copied in first (dest:
    src), `texts` written (dest: text), `binds` are bound in read-only (dest: src; too big
    to copy, e.g. OpenClaw). `name` is its host name (several boxes at once); `netns` a
    network namespace under /run/netns to run in instead of a private one of its own."""
    lower = rootfs()
    work = Path(tempfile.mkdtemp(prefix="clawvisor-box-", dir="/var/tmp"))
    name = name or f"cvbox{os.getpid()}"
    for d in ("upper", "work", "root"):
        (work / d).mkdir()
    subprocess.run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={lower},upperdir={work / 'upper'},workdir={work / 'work'}",
            str(work / "root"),
        ],
        check=True,
    )
    nspawn: subprocess.Popen[bytes] | None = None
    try:
        for dest, src in (files or {}).items():
            target = work / "root" / dest.lstrip("/")
            if src.is_dir():
                shutil.copytree(src, target, symlinks=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
        for dest, text in (texts or {}).items():
            target = work / "root" / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        log = (work / "console.log").open("wb")
        nspawn = subprocess.Popen(
            [
                "systemd-nspawn",
                "--boot",
                "--register=no",
                "--keep-unit",
                f"--network-namespace-path=/run/netns/{netns}" if netns else "--private-network",
                "--console=passive",
                f"--machine={name}",
                *(f"--bind-ro={src}:{dest}" for dest, src in (binds or {}).items()),
                "-D",
                str(work / "root"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=CLEAN_ENV,
        )
        box = Box(name, work, _leader(nspawn), nspawn)
        box.wait_for(
            lambda: box.run("test", "-S", "/run/systemd/private").returncode == 0,
            what="the container's systemd to listen",
        )
        proc = box.run("systemctl", "is-system-running", "--wait", timeout=120)
        state = proc.stdout.strip()
        if state not in ("running", "degraded"):
            raise RuntimeError(
                f"the box did not boot: {state!r} {proc.stderr} "
                f"{(work / 'console.log').read_text(errors='replace')[-2000:]}"
            )
        yield box
    finally:
        if nspawn is not None:
            _stop(nspawn)
        subprocess.run(["umount", str(work / "root")], check=False)
        if subprocess.run(["mountpoint", "-q", str(work / "root")], check=False).returncode == 0:
            subprocess.run(["umount", "-l", str(work / "root")], check=False)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(Path("/run/systemd/nspawn/propagate") / name, ignore_errors=True)


def _stop(nspawn: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """SIGTERM to systemd-nspawn (by its pid) powers the container off cleanly; a box
    still up after `grace` seconds has its init (nspawn's child, by pid) killed, which
    takes every process of its PID namespace with it. A test's box is thrown away: a
    clean power-off is not worth the seconds (often over ten, once a minute)."""
    if nspawn.poll() is not None:
        return
    nspawn.send_signal(signal.SIGTERM)
    try:
        nspawn.wait(grace)
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        kids = Path(f"/proc/{nspawn.pid}/task/{nspawn.pid}/children").read_text().split()
    except OSError:
        kids = []
    for kid in kids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(kid), signal.SIGKILL)
    try:
        nspawn.wait(20)
    except subprocess.TimeoutExpired:
        nspawn.kill()
        nspawn.wait()
