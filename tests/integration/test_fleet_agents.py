"""One operator, every VM, on every agent: the desktop, Telegram and web agents (and the
CLI's fleet file) following two real daemons' control sockets at once, each prompt
naming its VM, each verdict going to the VM it came from; and a hostile VM (a control
socket speaking the protocol, offering another VM's request id as its own) that can
never decide or withdraw another VM's request.

The desktop agent talks to a notification server on a real dbus-daemon; the Telegram
agent to the Bot API look-alike on 127.0.0.1; the web console over HTTP (its API) and in
Debian's Chromium.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import msgspec
import pytest

from supervisor.audit.chain import HEAD_FILE, Head
from tests.helpers import rig
from tests.helpers.botapi import BotApi
from tests.helpers.rig import connect_as, read_lines, request_line
from tests.helpers.rules import rule
from tests.integration.test_approvals import POLICY, settings

NOTIFY_SERVER = Path(__file__).resolve().parents[1] / "helpers" / "notify_server.py"
TOKEN = "654321:FLEET-token"
PAIRED = 333


class Vm:
    """One VM: its daemon, its workload user, where its open-url runs are recorded."""

    def __init__(self, name: str, daemon, alpha, record: Path):
        self.name, self.daemon, self.alpha, self.record = name, daemon, alpha, record

    def ask(self, url: str):
        sock = connect_as(self.daemon.intents, self.alpha)
        intent = {"action": "open-url", "target": "alpha", "url": url}
        sock.sendall(request_line(f"f-{uuid.uuid4().hex[:6]}", intent))
        return sock

    def control(self, op: str, **fields) -> dict:
        with connect_as(self.daemon.control, None) as c:
            c.sendall(json.dumps({"id": "c", "op": op, **fields}).encode() + b"\n")
            return read_lines(c, 1)[0]

    def pending(self, url: str, timeout: float = 10.0) -> dict:
        """This VM's pending view of the ask for `url` (waits for it)."""
        deadline = time.monotonic() + timeout
        while True:
            for p in self.control("pending")["result"]["pending"]:
                if p["params"].get("url") == url:
                    return p
            assert time.monotonic() < deadline, f"{url} is not pending on {self.name}"
            time.sleep(0.05)

    def still_pending(self, url: str) -> bool:
        return any(
            p["params"].get("url") == url for p in self.control("pending")["result"]["pending"]
        )

    def chain(self) -> str:
        raw = (self.daemon.root / "state" / HEAD_FILE).read_bytes()
        return msgspec.json.decode(raw, type=Head).chain


class HostileVm:
    """A VM whose daemon is not to be trusted: it speaks the control protocol, offers
    whatever requests the test makes up (another VM's request id and digest too), and
    records everything agents send it."""

    def __init__(self, path: Path):
        self.path = path
        self.received: list[dict] = []
        self.pending: list[dict] = []
        self.clients: list[socket.socket] = []
        self.lock = threading.Lock()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        path.chmod(0o666)
        self.server.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                self.clients.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                msg = json.loads(line)
                with self.lock:
                    self.received.append(msg)
                op, rid = msg.get("op"), msg.get("id")
                if op == "subscribe":
                    result = {"op": "pending", "pending": self.pending}
                elif op == "verdict":
                    result = {"op": "verdict", "request": msg["request"], "decided": True,
                              "votes": 1, "quorum": 1}  # fmt: skip
                else:
                    result = {}
                reply = {"id": rid, "status": "ok", "result": result}
                try:
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                except OSError:
                    return

    def ops(self, op: str) -> list[dict]:
        with self.lock:
            return [m for m in self.received if m.get("op") == op]

    def wait_op(self, op: str, count: int = 1) -> list[dict]:
        deadline = time.monotonic() + 10
        while len(self.ops(op)) < count:
            assert time.monotonic() < deadline, f"no {op} #{count}: {self.received}"
            time.sleep(0.05)
        return self.ops(op)

    def push(self, event: dict) -> None:
        with self.lock:
            for c in self.clients:
                c.sendall(json.dumps(event).encode() + b"\n")

    def close(self) -> None:
        self.server.close()
        with self.lock:
            for c in self.clients:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()
            self.clients.clear()


def stop(proc: subprocess.Popen[str]) -> None:
    rig.stop_process(proc)
    if proc.stdout:
        proc.stdout.close()


@pytest.fixture(scope="module")
def fleet(make_group, make_user, make_daemon, journal):
    """Two real VMs (daemons) and what the agents share: the operators and a directory."""
    group = make_group()
    op, tg_user = make_user(groups=(group,)), make_user(groups=(group,))
    root = rig.shared_tmpdir("clawvisor-fleet-agents-")
    vms = {}
    for name in ("vm1", "vm2"):
        alpha = make_user()
        (root / name).mkdir(mode=0o1777)
        (root / name).chmod(0o1777)
        record = root / name / "r.jsonl"
        extra = f'telegram_agent_user = "{tg_user.name}"\n'
        daemon = make_daemon(
            {"alpha": alpha},
            {"10.toml": POLICY + rule("notify", "alpha")},
            settings(group, record) + extra + "[monitors]\noverlay = false\ncounters = false\n",
        )
        vms[name] = Vm(name, daemon, alpha, record)
    yield vms, op, tg_user, root
    rig.cleanup_root(root)


def socket_args(vms: dict[str, Vm], **more: Path) -> list[str]:
    argv = []
    for name, vm in vms.items():
        argv += ["--socket", f"{name}={vm.daemon.control}"]
    for name, path in more.items():
        argv += ["--socket", f"{name}={path}"]
    return argv


def wait_for(predicate, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return found


# --- the desktop agent ------------------------------------------------------------------------


class Desktop:
    def __init__(self, root: Path, vms: dict[str, Vm], hostile: HostileVm, proc):
        self.root, self.vms, self.hostile, self.proc = root, vms, hostile, proc
        self.log, self.cmd = root / "notify.jsonl", root / "notify.cmd"

    def calls(self, method: str) -> list[dict]:
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        return [c for c in map(json.loads, lines) if c["method"] == method]

    def notification(self, text: str) -> tuple[int, list]:
        """(id, Notify args) of the notification whose body holds `text`; ids are the
        server's, counted from 1 in call order."""

        def find():
            for nid, c in enumerate(self.calls("Notify"), 1):
                if text in c["args"][4]:
                    return nid, c["args"]
            return None

        return wait_for(find, f"no notification for {text}")

    def invoke(self, nid: int, key: str) -> None:
        with connect_as(self.cmd, None) as s:
            s.sendall(json.dumps({"cmd": "invoke", "id": nid, "key": key}).encode() + b"\n")
            s.recv(10)


@pytest.fixture(scope="module")
def desk(fleet):
    vms, op, _, shared = fleet
    root = shared / "desktop"
    root.mkdir()
    os.chown(root, op.uid, op.gid)
    hostile = HostileVm(root / "evil.sock")
    procs = []
    try:
        bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--print-address=1",
             f"--address=unix:path={root}/bus"],
            stdout=subprocess.PIPE, text=True, env={"PATH": os.environ["PATH"]},
            **rig.as_user(op),
        )  # fmt: skip
        procs.append(bus)
        env = {
            "PATH": os.environ["PATH"],
            "DBUS_SESSION_BUS_ADDRESS": bus.stdout.readline().strip(),
        }
        server = subprocess.Popen(
            [sys.executable, str(NOTIFY_SERVER), str(root / "notify.jsonl"),
             str(root / "notify.cmd")],
            stdout=subprocess.PIPE, text=True, env=env, **rig.as_user(op),
        )  # fmt: skip
        procs.append(server)
        assert "ready" in server.stdout.readline()
        agent = subprocess.Popen(
            [str(rig.CLAWVISOR), "approver", "desktop",
             *socket_args(vms, evil=hostile.path)],
            stdout=subprocess.PIPE, text=True, env=env, **rig.as_user(op),
        )  # fmt: skip
        procs.append(agent)
        line = agent.stdout.readline()
        assert "showing requests as notifications on vm1, vm2, evil" in line, line
        hostile.wait_op("subscribe")
        yield Desktop(root, vms, hostile, agent)
    finally:
        hostile.close()
        for proc in reversed(procs):
            stop(proc)


def test_desktop_notifications_name_their_vm(desk):
    for name, vm in desk.vms.items():
        url = f"https://{name}.example/{uuid.uuid4().hex[:6]}"
        with vm.ask(url):
            _, args = desk.notification(url)
            assert args[3] == f"[{name}] alpha wants open-url in alpha"
            p = vm.pending(url)
            vm.control("verdict", request=p["id"], digest=p["digest"], allow=False)


def test_desktop_action_decides_only_the_vm_whose_request_it_showed(desk):
    vm1, vm2 = desk.vms["vm1"], desk.vms["vm2"]
    url1, url2 = (f"https://{n}.example/both-{uuid.uuid4().hex[:6]}" for n in ("vm1", "vm2"))
    with vm1.ask(url1) as s1, vm2.ask(url2) as s2:
        n1, _ = desk.notification(url1)
        n2, _ = desk.notification(url2)
        desk.invoke(n2, "allow")
        assert read_lines(s2, 1)[0]["status"] == "ok"
        assert json.loads(vm2.record.read_text().splitlines()[-1])["args"] == [url2]
        assert vm1.still_pending(url1)
        desk.invoke(n1, "deny")
        assert read_lines(s1, 1)[0]["error"]["code"] == "approval_denied"


def test_desktop_a_hostile_vm_reusing_a_request_id_cannot_decide_or_withdraw_anothers(desk):
    vm1, evil = desk.vms["vm1"], desk.hostile
    url = f"https://vm1.example/hostile-{uuid.uuid4().hex[:6]}"
    with vm1.ask(url) as sock:
        real = vm1.pending(url)
        n1, _ = desk.notification(url)
        # The hostile VM offers vm1's request as its own: same id, same digest.
        fake = {**real, "params": {"url": url + "-evil"}}
        evil.push({"event": "pending", "request": fake})
        n_evil, args = desk.notification(url + "-evil")
        assert args[3].startswith("[evil] ")
        desk.invoke(n_evil, "allow")
        [verdict] = evil.wait_op("verdict")
        assert verdict["request"] == real["id"]  # the hostile VM got its own verdict...
        assert vm1.still_pending(url)  # ...and vm1's request with that id is untouched
        # Its "withdrawal" of that id closes its own notification, not vm1's.
        closes = len(desk.calls("CloseNotification"))
        evil.push({"event": "withdrawn", "id": real["id"], "reason": "denied"})
        evil.push(
            {"event": "pending", "request": {**fake, "params": {"url": "https://sync.example/"}}}
        )
        desk.notification("https://sync.example/")  # the agent has taken both events
        assert [c["args"] for c in desk.calls("CloseNotification")[closes:]] == [[n_evil]]
        desk.invoke(n1, "allow")
        assert read_lines(sock, 1)[0]["status"] == "ok"
        assert len(evil.ops("verdict")) == 1


# --- the Telegram agent -----------------------------------------------------------------------


class Tg:
    def __init__(self, api: BotApi, vms: dict[str, Vm], hostile: HostileVm, proc):
        self.api, self.vms, self.hostile, self.proc = api, vms, hostile, proc

    def message(self, text: str) -> dict:
        def find():
            for m, p in list(self.api.calls):
                if m == "sendMessage" and text in p.get("text", ""):
                    return p
            return None

        return wait_for(find, f"no message holding {text}")

    def buttons(self, text: str) -> list[str]:
        return [
            b["callback_data"] for b in self.message(text)["reply_markup"]["inline_keyboard"][0]
        ]

    def press(self, data: str) -> dict:
        before = len([m for m, _ in self.api.calls if m == "answerCallbackQuery"])
        self.api.push({"callback_query": {"id": f"cq-{uuid.uuid4().hex[:6]}",
                                          "from": {"id": PAIRED},
                                          "message": {"message_id": 1, "chat": {"id": PAIRED}},
                                          "data": data}})  # fmt: skip
        return self.api.wait("answerCallbackQuery", before + 1)[-1]

    def edits(self) -> list[dict]:
        return [p for m, p in list(self.api.calls) if m == "editMessageText"]


@pytest.fixture(scope="module")
def tg(fleet):
    vms, _, tg_user, shared = fleet
    root = shared / "telegram"
    root.mkdir()
    os.chown(root, tg_user.uid, tg_user.gid)
    token_file, state = root / "token", root / "state"
    token_file.write_text(TOKEN + "\n")
    os.chown(token_file, tg_user.uid, tg_user.gid)
    token_file.chmod(0o600)
    state.mkdir(mode=0o700)
    os.chown(state, tg_user.uid, tg_user.gid)
    hostile = HostileVm(root / "evil.sock")
    with BotApi(TOKEN) as api:
        agent = subprocess.Popen(
            [str(rig.CLAWVISOR), "approver", "telegram", *socket_args(vms, evil=hostile.path),
             "--token-file", str(token_file), "--api-base", api.base, "--state-dir", str(state)],
            stdout=subprocess.PIPE, text=True, env={"PATH": os.environ["PATH"]},
            **rig.as_user(tg_user),
        )  # fmt: skip
        try:
            assert "no Telegram user is paired yet" in agent.stdout.readline()
            line = agent.stdout.readline()
            assert "polling" in line and "on vm1, vm2, evil" in line, line
            pair = subprocess.Popen(
                [str(rig.CLAWVISOR), "approver", "telegram", "pair", "--state-dir", str(state),
                 "--timeout", "30"],
                stdout=subprocess.PIPE, text=True, **rig.as_user(tg_user),
            )  # fmt: skip
            code = re.search(r"/pair (\d+)", "".join(pair.stdout.readline() for _ in range(3)))
            api.push({"message": {"message_id": 1, "from": {"id": PAIRED},
                                  "chat": {"id": PAIRED, "type": "private"},
                                  "text": f"/pair {code[1]}"}})  # fmt: skip
            assert pair.wait(30) == 0
            pair.stdout.close()
            hostile.wait_op("subscribe")
            yield Tg(api, vms, hostile, agent)
        finally:
            hostile.close()
            stop(agent)


def test_telegram_one_bot_names_each_vm_and_its_buttons_fit_telegrams_64_bytes(tg):
    for name, vm in tg.vms.items():
        url = f"https://{name}.example/tg-{uuid.uuid4().hex[:6]}"
        with vm.ask(url) as sock:
            msg = tg.message(url)
            assert msg["text"].startswith(f"[{name}] alpha wants open-url in alpha\n")
            assert all(len(d.encode()) <= 64 for d in tg.buttons(url))
            tg.press(tg.buttons(url)[-1])  # Deny
            assert read_lines(sock, 1)[0]["error"]["code"] == "approval_denied"


def test_telegram_a_press_decides_only_its_vms_request_and_edits_that_message(tg, journal):
    vm1, vm2 = tg.vms["vm1"], tg.vms["vm2"]
    url1, url2 = (f"https://{n}.example/tg-both-{uuid.uuid4().hex[:6]}" for n in ("vm1", "vm2"))
    with vm1.ask(url1) as s1, vm2.ask(url2) as s2:
        tg.message(url1)
        sent2 = tg.message(url2)
        assert tg.press(tg.buttons(url2)[0])["text"] == "Allowed."
        assert read_lines(s2, 1)[0]["status"] == "ok"
        assert vm1.still_pending(url1)
        wait_for(lambda: any(url2 in e["text"] and "Allowed by" in e["text"] for e in tg.edits()),
                 "no edit for vm2's message")  # fmt: skip
        edit = next(e for e in tg.edits() if url2 in e["text"])
        assert edit["text"].startswith("[vm2] ")
        assert not any(url1 in e["text"] for e in tg.edits())
        assert "message_id" in edit and edit["chat_id"] == sent2["chat_id"]
        tg.press(tg.buttons(url1)[-1])
        assert read_lines(s1, 1)[0]["error"]["code"] == "approval_denied"
    # Audited in vm2's own trail, by the Telegram user who pressed.
    assert journal.wait_entries(1, CLAWVISOR_CHAIN=vm2.chain(),
                                CLAWVISOR_APPROVER=f"telegram telegram:{PAIRED}")  # fmt: skip


def test_telegram_a_withdrawn_ask_edits_the_message_of_its_own_vm(tg):
    vm2 = tg.vms["vm2"]
    url = "https://timeout.example/fleet-tg"
    with vm2.ask(url) as sock:
        sent = tg.message(url)
        assert read_lines(sock, 1)[0]["error"]["code"] == "approval_timeout"
    edit = wait_for(lambda: next((e for e in tg.edits() if url in e["text"]), None),
                    "no edit for the timed-out ask")  # fmt: skip
    assert edit["text"].startswith("[vm2] ") and "Timed out: denied" in edit["text"]
    assert edit["chat_id"] == sent["chat_id"]


def test_telegram_notices_name_their_vm(tg):
    vm1 = tg.vms["vm1"]
    tag = uuid.uuid4().hex[:6]
    with connect_as(vm1.daemon.intents, vm1.alpha) as s:
        s.sendall(request_line("n1", {"action": "notify", "message": f"hello {tag}"}))
        assert read_lines(s, 1)[0]["status"] == "ok"
    assert tg.message(f"hello {tag}")["text"] == f"[vm1] alpha says:\nhello {tag}"


def test_telegram_a_button_relabelled_for_another_vm_is_forged(tg, journal):
    vm1, evil = tg.vms["vm1"], tg.hostile
    url = f"https://vm1.example/relabel-{uuid.uuid4().hex[:6]}"
    with vm1.ask(url) as sock:
        real = vm1.pending(url)
        tg.message(url)
        evil.push({"event": "pending", "request": {**real, "params": {"url": url + "-evil"}}})
        tg.message(url + "-evil")
        allow = tg.buttons(url)[0]
        index, rest = allow.split("|", 1)
        assert index == "0"  # vm1 is the first VM given; evil the third
        assert tg.press("2|" + rest)["text"] == "This button is not valid."
        assert tg.press("1|" + rest)["text"] == "This button is not valid."
        assert evil.ops("verdict") == [] and vm1.still_pending(url)
        assert journal.wait_entries(1, CLAWVISOR_CHAIN=vm1.chain(),
                                    CLAWVISOR_OUTCOME="forged_callback")  # fmt: skip
        tg.press(tg.buttons(url)[-1])
        assert read_lines(sock, 1)[0]["error"]["code"] == "approval_denied"


def test_telegram_a_hostile_vm_reusing_a_request_id_cannot_decide_or_withdraw_anothers(tg):
    vm1, evil = tg.vms["vm1"], tg.hostile
    url = f"https://vm1.example/tg-hostile-{uuid.uuid4().hex[:6]}"
    with vm1.ask(url) as sock:
        real = vm1.pending(url)
        tg.message(url)
        fake = {**real, "params": {"url": url + "-evil2"}}
        evil.push({"event": "pending", "request": fake})
        assert tg.message(url + "-evil2")["text"].startswith("[evil] ")
        before = len(evil.ops("verdict"))
        assert tg.press(tg.buttons(url + "-evil2")[0])["text"] == "Allowed."
        assert evil.wait_op("verdict", before + 1)[-1]["request"] == real["id"]
        assert vm1.still_pending(url)  # vm1's request of that id: untouched
        evil.push({"event": "withdrawn", "id": real["id"], "reason": "approved", "by": "evil"})
        evil.push({"event": "notice", "workload": "x", "message": f"sync {url}"})
        tg.message(f"sync {url}")  # the agent has taken the withdrawal
        assert not any(e["text"].startswith("[vm1] ") and url in e["text"] for e in tg.edits())
        assert tg.press(tg.buttons(url)[0])["text"] == "Allowed."
        assert read_lines(sock, 1)[0]["status"] == "ok"


# --- the web console --------------------------------------------------------------------------


free_port = rig.free_port


class Web:
    def __init__(self, vms: dict[str, Vm], op, root: Path, port: int, proc):
        self.vms, self.op, self.root, self.port, self.proc = vms, op, root, port, proc
        self.base = f"http://127.0.0.1:{port}"

    def http(self, method: str, path: str, headers: dict[str, str] | None = None,
             body: bytes | None = None) -> tuple[int, str]:  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request(method, path, body=body,
                     headers={"Host": f"127.0.0.1:{self.port}", **(headers or {})})  # fmt: skip
        res = conn.getresponse()
        out = (res.status, res.read().decode("utf-8", "replace"))
        if res.status == 303:
            out = (303, res.getheader("location") or "", res.getheader("set-cookie") or "")
        conn.close()
        return out

    def link(self) -> str:
        out = subprocess.run(
            [str(rig.CLAWVISOR), "approver", "web", "--link", "--listen",
             f"127.0.0.1:{self.port}", "--state-dir", str(self.root / "state")],
            capture_output=True, text=True, timeout=30,
            env={"PATH": os.environ["PATH"], "HOME": str(self.root)}, **rig.as_user(self.op),
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def session(self) -> dict[str, str]:
        """The headers of a fresh session's state-changing request."""
        _, location, cookie = self.http("GET", self.link().removeprefix(self.base))
        key = re.fullmatch(r"/#k=([A-Za-z0-9_-]+)", location)
        assert key is not None, location
        return {"Cookie": cookie.split(";", 1)[0], "X-CSRF-Token": key[1], "Origin": self.base}

    def verdict(self, **form) -> tuple[int, str]:
        status, text, *_ = self.http("POST", "/verdict", self.session(), json.dumps(form).encode())
        return status, text


@pytest.fixture(scope="module")
def web(fleet):
    vms, op, _, shared = fleet
    root = shared / "web"
    root.mkdir()
    os.chown(root, op.uid, op.gid)
    port = free_port()
    proc = subprocess.Popen(
        [str(rig.CLAWVISOR), "approver", "web", *socket_args(vms),
         "--listen", f"127.0.0.1:{port}", "--state-dir", str(root / "state"),
         "--config-dir", str(vms["vm1"].daemon.config_dir)],
        stdout=subprocess.PIPE, text=True,
        env={"PATH": os.environ["PATH"], "HOME": str(root)}, **rig.as_user(op),
    )  # fmt: skip
    try:
        assert "web console at" in proc.stdout.readline()
        proc.stdout.readline()  # the first login link

        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        wait_for(listening, "the console did not listen", 20)
        yield Web(vms, op, root, port, proc)
    finally:
        stop(proc)


def test_web_a_verdict_goes_to_the_vm_it_names(web, journal):
    vm1, vm2 = web.vms["vm1"], web.vms["vm2"]
    url1, url2 = (f"https://{n}.example/web-{uuid.uuid4().hex[:6]}" for n in ("vm1", "vm2"))
    with vm1.ask(url1) as s1, vm2.ask(url2) as s2:
        p1, p2 = vm1.pending(url1), vm2.pending(url2)
        status, text = web.verdict(vm="vm2", request=p2["id"], digest=p2["digest"], allow=True)
        assert status == 200, text
        assert read_lines(s2, 1)[0]["status"] == "ok"
        assert vm1.still_pending(url1)
        status, text = web.verdict(vm="vm1", request=p1["id"], digest=p1["digest"], allow=False)
        assert status == 200, text
        assert read_lines(s1, 1)[0]["error"]["code"] == "approval_denied"
    user = subprocess.run(["id", "-un", str(web.op.uid)], capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    assert journal.wait_entries(
        1, CLAWVISOR_CHAIN=vm2.chain(), CLAWVISOR_APPROVER=f"web web:{user}"
    )


def test_web_a_verdict_naming_another_vm_than_its_request_is_not_taken(web):
    vm1, vm2 = web.vms["vm1"], web.vms["vm2"]
    url = f"https://vm1.example/web-wrong-{uuid.uuid4().hex[:6]}"
    with vm1.ask(url) as sock:
        p = vm1.pending(url)
        status, text = web.verdict(vm="vm2", request=p["id"], digest=p["digest"], allow=True)
        assert status == 409, text  # vm2 holds no such request
        assert vm1.still_pending(url)
        status, text = web.verdict(vm="vm3", request=p["id"], digest=p["digest"], allow=True)
        assert status == 404 and "no such VM" in text
        assert vm1.still_pending(url) and not vm2.still_pending(url)
        web.verdict(vm="vm1", request=p["id"], digest=p["digest"], allow=False)
        assert read_lines(sock, 1)[0]["error"]["code"] == "approval_denied"


def test_web_the_event_stream_names_each_requests_vm(web):
    vm2 = web.vms["vm2"]
    url = f"https://vm2.example/web-stream-{uuid.uuid4().hex[:6]}"
    with vm2.ask(url) as sock:
        p = vm2.pending(url)
        h = web.session()
        s = socket.create_connection(("127.0.0.1", web.port), timeout=10)
        s.sendall(f"GET /events?k={h['X-CSRF-Token']} HTTP/1.1\r\nHost: 127.0.0.1:{web.port}"
                  f"\r\nCookie: {h['Cookie']}\r\n\r\n".encode())  # fmt: skip
        seen = b""
        while url.encode() not in seen:
            chunk = s.recv(65536)
            assert chunk, seen
            seen += chunk
        s.close()
        snapshot = json.loads(re.search(rb"data: (\{.*\})", seen)[1])
        [card] = [c for c in snapshot["pending"] if c["params"]["url"] == url]
        assert card["vm"] == "vm2" and card["title"] == "[vm2] alpha wants open-url in alpha"
        assert [v["name"] for v in snapshot["vms"]] == ["vm1", "vm2"]
        web.verdict(vm="vm2", request=p["id"], digest=p["digest"], allow=False)
        read_lines(sock, 1)


def test_web_workloads_and_policy_pages_say_they_show_the_first_vm_only(web):
    cookie = web.session()["Cookie"]
    for path in ("/workloads", "/policy"):
        status, page, *_ = web.http("GET", path, {"Cookie": cookie})
        assert status == 200 and "this page shows vm1 only" in page, path
    status, page, *_ = web.http("GET", "/", {"Cookie": cookie})
    assert 'id="vm-note"' not in page


def test_web_a_cards_allow_button_answers_its_own_vm(web):
    playwright = pytest.importorskip("playwright.sync_api")
    from tests.helpers.chromium import CHROMIUM, FLAGS

    vm1, vm2 = web.vms["vm1"], web.vms["vm2"]
    url1, url2 = (f"https://{n}.example/web-card-{uuid.uuid4().hex[:6]}" for n in ("vm1", "vm2"))
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page()
            page.goto(web.link())
            page.wait_for_selector("#status:text('connected to vm1, vm2')", timeout=10_000)
            with vm1.ask(url1) as s1, vm2.ask(url2) as s2:
                card2 = page.locator("#pending li.card[data-vm='vm2']", has_text=url2)
                card2.wait_for(timeout=5_000)
                assert card2.locator("h3").inner_text() == "[vm2] alpha wants open-url in alpha"
                card1 = page.locator("#pending li.card[data-vm='vm1']", has_text=url1)
                card1.wait_for(timeout=5_000)
                card2.locator("button.allow-once").click()
                assert read_lines(s2, 1)[0]["status"] == "ok"
                assert vm1.still_pending(url1)
                page.locator("#closed li[data-vm='vm2']", has_text=url2).wait_for(timeout=5_000)
                assert card1.count() == 1
                card1.locator("button.deny").click()
                assert read_lines(s1, 1)[0]["error"]["code"] == "approval_denied"
        finally:
            browser.close()


# --- the CLI: a fleet file, and VMs going away ------------------------------------------------


def cli(argv: list[str], op) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(rig.CLAWVISOR), "approver", "cli", *argv],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **rig.as_user(op),
    )  # fmt: skip


def read_until(proc, text: str) -> str:
    seen = ""
    while text not in seen:
        ch = proc.stdout.read(1)
        assert ch, seen
        seen += ch
    return seen


def test_cli_with_a_fleet_file_serves_every_vm_it_names(fleet):
    vms, op, _, root = fleet
    fleet_file = root / "fleet.toml"
    fleet_file.write_text("".join(f'[vms.{n}]\nsocket = "{vm.daemon.control}"\n'
                                  for n, vm in vms.items()))  # fmt: skip
    proc = cli(["--fleet", str(fleet_file)], op)
    try:
        assert "waiting for requests on vm1, vm2" in proc.stdout.readline()
        url = f"https://vm2.example/fleet-file-{uuid.uuid4().hex[:6]}"
        with vms["vm2"].ask(url) as sock:
            assert "[vm2] alpha wants open-url in alpha" in read_until(proc, "Allow?")
            proc.stdin.write("y\n")
            proc.stdin.flush()
            assert read_lines(sock, 1)[0]["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        proc.stdout.close()
        proc.stdin.close()


def test_cli_names_a_vm_that_went_away_and_keeps_serving_the_others(fleet):
    vms, op, _, root = fleet
    hostile = HostileVm(root / f"gone-{uuid.uuid4().hex[:6]}.sock")
    proc = cli([*socket_args({"vm1": vms["vm1"]}), "--socket", f"evil={hostile.path}"], op)
    try:
        assert "waiting for requests on vm1, evil" in proc.stdout.readline()
        hostile.wait_op("subscribe")
        hostile.close()
        read_until(proc, "evil: the daemon closed the connection; still serving vm1")
        url = f"https://vm1.example/after-{uuid.uuid4().hex[:6]}"
        with vms["vm1"].ask(url) as sock:
            assert url in read_until(proc, "Allow?")
            proc.stdin.write("y\n")
            proc.stdin.flush()
            assert read_lines(sock, 1)[0]["status"] == "ok"
        assert proc.poll() is None
    finally:
        hostile.close()
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        proc.stdout.close()
        proc.stdin.close()


def test_cli_exits_1_once_every_vm_is_gone(fleet):
    _, op, _, root = fleet
    a, b = (HostileVm(root / f"{n}-{uuid.uuid4().hex[:6]}.sock") for n in ("a", "b"))
    proc = cli(["--socket", f"a={a.path}", "--socket", f"b={b.path}"], op)
    try:
        a.wait_op("subscribe")
        b.wait_op("subscribe")
        a.close()
        read_until(proc, "a: the daemon closed the connection; still serving b")
        assert proc.poll() is None
        b.close()
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 1
        assert "b: the daemon closed the connection; no VM left" in out
    finally:
        a.close()
        b.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("agent", ["cli", "desktop", "telegram", "web"])
def test_every_agent_refuses_a_bad_fleet_file_with_status_2(fleet, agent):
    _, _, _, root = fleet
    bad = root / f"bad-{agent}.toml"
    bad.write_text('[vms.vm1]\nsocket = "/run/x.sock"\nport = 22\n')
    out = subprocess.run([str(rig.CLAWVISOR), "approver", agent, "--fleet", str(bad)],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 2, out
    assert f"clawvisor approver {agent}: {bad}" in out.stdout and "port" in out.stdout


def test_web_activity_names_each_workload_with_its_vm(web):
    h = web.session()
    s = socket.create_connection(("127.0.0.1", web.port), timeout=10)
    s.sendall(f"GET /activity/events?k={h['X-CSRF-Token']} HTTP/1.1\r\nHost: 127.0.0.1:"
              f"{web.port}\r\nCookie: {h['Cookie']}\r\n\r\n".encode())  # fmt: skip
    seen = b""
    deadline = time.monotonic() + 30
    while b'"workload":"vm2/alpha"' not in seen:
        assert time.monotonic() < deadline, seen[-2000:]
        subprocess.run(["/bin/true"], check=True, **rig.as_user(web.vms["vm2"].alpha))
        s.settimeout(1.0)
        with contextlib.suppress(TimeoutError):
            seen += s.recv(65536)
    s.close()
    line = next(e for e in re.findall(rb"data: (\{.*\})", seen) if b"vm2/alpha" in e)
    events = json.loads(line).get("events") or [
        e for es in json.loads(line)["recent"].values() for e in es
    ]
    mine = [e for e in events if e["workload"] == "vm2/alpha"]
    assert mine and all(e["vm"] == "vm2" and e["text"].startswith("[vm2] ") for e in mine)
