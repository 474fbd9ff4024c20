"""The desktop agent on a private session bus, against a notification server on real D-Bus."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import rig
from tests.helpers.rig import connect_as, read_lines, request_line
from tests.integration.test_approvals import POLICY, settings

NOTIFY_SERVER = Path(__file__).resolve().parents[1] / "helpers" / "notify_server.py"


class Desktop:
    def __init__(self, root: Path, op, daemon, alpha):
        self.root, self.op, self.daemon, self.alpha = root, op, daemon, alpha
        self.log = root / "notify.jsonl"
        self.cmd = root / "notify.cmd"
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, argv, env, ready: str | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, text=True, **rig.as_user(self.op)
        )
        self.procs.append(proc)
        if ready is not None:
            line = proc.stdout.readline()
            assert ready in line, line
        return proc

    def stop(self):
        for proc in reversed(self.procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def calls(self, method: str) -> list[dict]:
        if not self.log.exists():
            return []
        return [
            c for c in map(json.loads, self.log.read_text().splitlines()) if c["method"] == method
        ]

    def wait_call(self, method: str, count: int) -> list[dict]:
        deadline = time.monotonic() + 10
        while len(self.calls(method)) < count:
            assert time.monotonic() < deadline, f"no {method} #{count}"
            time.sleep(0.05)
        return self.calls(method)

    def command(self, **cmd) -> None:
        with connect_as(self.cmd, None) as s:
            s.sendall(json.dumps(cmd).encode() + b"\n")
            s.recv(10)

    def ask(self, url: str):
        sock = connect_as(self.daemon.intents, self.alpha)
        sock.sendall(
            request_line(
                f"d-{uuid.uuid4().hex[:6]}", {"action": "open-url", "target": "alpha", "url": url}
            )
        )
        return sock


@pytest.fixture(scope="module")
def desk(make_group, make_user, make_daemon):
    group = make_group()
    alpha, op = make_user(), make_user(groups=(group,))
    root = rig.shared_tmpdir("clawvisor-desktop-")
    os.chown(root, op.uid, op.gid)
    (root / "rec").mkdir(mode=0o1777)
    (root / "rec").chmod(0o1777)
    daemon = make_daemon(
        {"alpha": alpha}, {"10.toml": POLICY}, settings(group, root / "rec" / "r.jsonl")
    )
    d = Desktop(root, op, daemon, alpha)
    bus = d.start(
        [
            "dbus-daemon",
            "--session",
            "--nofork",
            "--print-address=1",
            f"--address=unix:path={root}/bus",
        ],
        {"PATH": os.environ["PATH"]},
    )
    address = bus.stdout.readline().strip()
    env = {"PATH": os.environ["PATH"], "DBUS_SESSION_BUS_ADDRESS": address}
    d.start([sys.executable, str(NOTIFY_SERVER), str(d.log), str(d.cmd)], env, "ready")
    d.start(
        [str(rig.CLAWVISOR), "approver", "desktop", "--socket", str(daemon.control)],
        env,
        "showing requests as notifications",
    )
    yield d
    d.stop()
    rig.cleanup_root(root)


def test_a_request_becomes_a_critical_resident_notification_with_actions(desk):
    url = f"https://desk.example/{uuid.uuid4().hex[:6]}?a=<b>&c"
    with desk.ask(url) as sock:
        note = desk.wait_call("Notify", 1)[-1]["args"]
        app, replaces, icon, summary, body, actions, hints, timeout = note
        assert icon == "dialog-warning"
        assert app == "clawvisor" and replaces == 0 and timeout == 0
        assert summary == "alpha wants open-url in alpha"
        assert url.replace("<", "&lt;").replace(">", "&gt;").replace("&c", "&amp;c") in body
        assert actions == ["allow", "Allow", "allow-30m", "Allow 30 min", "deny", "Deny"]
        assert hints["urgency"] == ["y", 2] and hints["resident"] == ["b", True]
        nid = len(desk.calls("Notify"))
        desk.command(cmd="invoke", id=nid, key="allow")
        reply = read_lines(sock, 1)[0]
    assert reply["status"] == "ok"
    record = desk.root / "rec" / "r.jsonl"
    assert json.loads(record.read_text().splitlines()[-1])["args"] == [url]


def test_deny_action_denies(desk):
    with desk.ask(f"https://desk.example/{uuid.uuid4().hex[:6]}") as sock:
        n = len(desk.calls("Notify")) + 1
        desk.wait_call("Notify", n)
        desk.command(cmd="invoke", id=n, key="deny")
        assert read_lines(sock, 1)[0]["error"]["code"] == "approval_denied"


def test_closing_without_an_action_gives_no_verdict(desk):
    url = f"https://desk.example/{uuid.uuid4().hex[:6]}"
    with desk.ask(url) as sock:
        n = len(desk.calls("Notify")) + 1
        desk.wait_call("Notify", n)
        desk.command(cmd="dismiss", id=n)
        sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            sock.recv(100)  # still pending: dismissing is not an answer
        with connect_as(desk.daemon.control, None) as c:
            c.sendall(b'{"id":"p","op":"pending"}\n')
            [p] = [q for q in read_lines(c, 1)[0]["result"]["pending"] if q["params"]["url"] == url]
            c.sendall(
                json.dumps(
                    {
                        "id": "v",
                        "op": "verdict",
                        "request": p["id"],
                        "digest": p["digest"],
                        "allow": False,
                    }
                ).encode()
                + b"\n"
            )
            read_lines(c, 1)
        assert read_lines(sock, 1)[0]["error"]["code"] == "approval_denied"


def test_an_answer_elsewhere_withdraws_the_notification(desk):
    url = f"https://desk.example/{uuid.uuid4().hex[:6]}"
    closes = len(desk.calls("CloseNotification"))
    with desk.ask(url) as sock:
        n = len(desk.calls("Notify")) + 1
        desk.wait_call("Notify", n)
        out = subprocess.run(
            [str(rig.CLAWVISOR), "pending", "--socket", str(desk.daemon.control)],
            capture_output=True,
            text=True,
        )
        pid = next(ln.split()[0] for ln in out.stdout.splitlines() if ln.startswith("p-"))
        subprocess.run(
            [str(rig.CLAWVISOR), "approve", pid, "--socket", str(desk.daemon.control)],
            capture_output=True,
            check=True,
        )
        assert read_lines(sock, 1)[0]["status"] == "ok"
    assert desk.wait_call("CloseNotification", closes + 1)[-1]["args"] == [n]


def test_no_answer_times_out_and_the_notification_is_withdrawn(desk):
    closes = len(desk.calls("CloseNotification"))
    with desk.ask("https://timeout.example/desk") as sock:
        n = len(desk.calls("Notify")) + 1
        desk.wait_call("Notify", n)
        assert read_lines(sock, 1)[0]["error"]["code"] == "approval_timeout"
    assert desk.wait_call("CloseNotification", closes + 1)[-1]["args"] == [n]
