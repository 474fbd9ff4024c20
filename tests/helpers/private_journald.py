"""A journald of a test's own, in a private mount namespace: it can be killed and started
again (by its pid) without touching the journald everyone else logs to.

It listens on `<root>/run/socket` and keeps its files in `<root>/journal`; a process
started under `client_wrapper()` sees that socket at journald's usual path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers.hide_dir import JOURNALD_DIRS, binding
from tests.helpers.rig import JOURNALD, shared_tmpdir


class PrivateJournald:
    def __init__(self, config: str | None = None) -> None:
        """`config`: its journald.conf (e.g. the one clawvisor ships for its namespace)."""
        self.root = shared_tmpdir("clawvisor-journald-")
        self.config = config
        self.run_dir = self.root / "run"
        self.files = self.root / "journal"
        for d in (self.run_dir, self.files, self.root / "persistent"):
            d.mkdir(mode=0o755)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.run_dir / "socket"

    def client_wrapper(self) -> list[str]:
        """A wrapper argv: what follows it logs to this journald (as the trail's namespace
        and as the system journal alike)."""
        return binding({d: self.run_dir for d in JOURNALD_DIRS})

    @property
    def persistent(self) -> Path:
        """Where it keeps its files with `Storage=persistent`."""
        return self.root / "persistent"

    def start(self) -> None:
        mounts: dict[str, str | os.PathLike[str]] = {
            "/run/systemd/journal": self.run_dir,
            "/run/log/journal": self.files,
            # Never the host's persistent journal, even if something asks for a flush.
            "/var/log/journal": self.persistent,
        }
        if self.config is not None:
            conf = self.root / "journald.conf"
            conf.write_text(self.config)
            mounts["/etc/systemd/journald.conf"] = conf
        with_mounts = binding(mounts)
        self.proc = subprocess.Popen(
            [*with_mounts, JOURNALD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the private journald did not start")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL, by its own pid."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def entries(self, *match: str) -> list[dict[str, str]]:
        """Its entries matching FIELD=value, oldest first."""
        out = subprocess.run(
            ["journalctl", "--no-pager", "-o", "json", "-D", str(self.files), *match],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return [json.loads(ln) for ln in out.splitlines() if ln.strip()]

    def __enter__(self) -> PrivateJournald:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.root)], check=False)


def status_through_an_outage(
    jd: PrivateJournald, intents: Path, user: object, ids: list[str], down: int, up: int
) -> None:
    """Send one `status` per id (as `user`) on one connection, killing `jd` before the
    `down`-th and starting it again before the `up`-th: the records around the kill are
    in the fallback file, the rest in the journal."""
    from tests.helpers.rig import connect_as, read_lines, request_line

    with connect_as(intents, user) as sock:  # type: ignore[arg-type]
        for n, rid in enumerate(ids):
            if n == down:
                jd.kill()
            elif n == up:
                jd.start()
            sock.sendall(request_line(rid, {"action": "status"}))
            assert read_lines(sock, 1)[0]["status"] == "ok"
            time.sleep(0.005)
