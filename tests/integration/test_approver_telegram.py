"""The Telegram agent against a Bot API server on 127.0.0.1: pairing, buttons, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid

import pytest

from tests.helpers import rig
from tests.helpers.botapi import BotApi
from tests.helpers.rig import connect_as, read_lines, request_line
from tests.integration.test_approvals import POLICY, settings

TOKEN = "123456:TEST-token"
PAIRED, STRANGER = 111, 222


class Tg:
    def __init__(self, api, daemon, alpha, tg_user, state, token_file):
        self.api, self.daemon, self.alpha, self.user = api, daemon, alpha, tg_user
        self.state, self.token_file = state, token_file

    def ask(self, url: str):
        rid = f"t-{uuid.uuid4().hex[:8]}"
        sock = connect_as(self.daemon.intents, self.alpha)
        sock.sendall(request_line(rid, {"action": "open-url", "target": "alpha", "url": url}))
        return sock, rid

    def wait_message(self, url: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m, p in list(self.api.calls):
                if m == "sendMessage" and url in p.get("text", ""):
                    return p
            time.sleep(0.05)
        raise AssertionError(f"no message for {url}")

    def press(self, user: int, data: str, message_id: int = 1, chat: int | None = None):
        self.api.push(
            {
                "callback_query": {
                    "id": f"cq-{uuid.uuid4().hex[:6]}",
                    "from": {"id": user},
                    "message": {"message_id": message_id, "chat": {"id": chat or user}},
                    "data": data,
                }
            }
        )

    def edits(self) -> list[str]:
        return [p["text"] for m, p in self.api.calls if m == "editMessageText"]


@pytest.fixture(scope="module")
def tg(make_group, make_user, make_daemon, journal):
    group = make_group()
    alpha, tg_user = make_user(), make_user(groups=(group,))
    root = rig.shared_tmpdir("clawvisor-tg-")
    (root / "rec").mkdir(mode=0o1777)
    (root / "rec").chmod(0o1777)
    state = root / "state"
    token_file = root / "token"
    token_file.write_text(TOKEN + "\n")
    os.chown(token_file, tg_user.uid, tg_user.gid)
    token_file.chmod(0o600)
    extra = f'telegram_agent_user = "{tg_user.name}"\n'
    daemon = make_daemon(
        {"alpha": alpha}, {"10.toml": POLICY}, settings(group, root / "rec" / "r.jsonl") + extra
    )
    state.mkdir(mode=0o700)
    os.chown(state, tg_user.uid, tg_user.gid)
    with BotApi(TOKEN) as api:
        agent = subprocess.Popen(
            [
                str(rig.CLAWVISOR),
                "approver",
                "telegram",
                "--socket",
                str(daemon.control),
                "--token-file",
                str(token_file),
                "--api-base",
                api.base,
                "--state-dir",
                str(state),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={"PATH": os.environ["PATH"]},
            **rig.as_user(tg_user),
        )
        try:
            assert "no Telegram user is paired yet" in agent.stdout.readline()
            assert "polling" in agent.stdout.readline()
            t = Tg(api, daemon, alpha, tg_user, state, token_file)
            pair = subprocess.Popen(
                [
                    str(rig.CLAWVISOR),
                    "approver",
                    "telegram",
                    "pair",
                    "--state-dir",
                    str(state),
                    "--timeout",
                    "30",
                ],
                stdout=subprocess.PIPE,
                text=True,
                **rig.as_user(tg_user),
            )
            lines = [pair.stdout.readline() for _ in range(3)]
            code = lines[2].split()[-1]
            api.push(
                {
                    "message": {
                        "message_id": 1,
                        "from": {"id": PAIRED},
                        "chat": {"id": PAIRED, "type": "private"},
                        "text": f"/pair {code}",
                    }
                }
            )
            assert pair.wait(30) == 0
            assert "paired Telegram user(s): 111" in pair.stdout.read()
            yield t
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(10)
    rig.cleanup_root(root)


def test_pairing_recorded_the_user_and_told_them(tg):
    assert json.loads((tg.state / "paired.json").read_text()) == [PAIRED]
    assert any(
        p["chat_id"] == PAIRED and p["text"].startswith("Paired")
        for m, p in tg.api.calls
        if m == "sendMessage"
    )


def test_request_arrives_with_buttons_and_no_parse_mode_and_allow_runs_it(tg, journal):
    url = f"https://tg.example/{uuid.uuid4().hex[:6]}?x=<b>*_`"
    sock, rid = tg.ask(url)
    with sock:
        msg = tg.wait_message(url)
        assert msg["chat_id"] == PAIRED and "parse_mode" not in msg
        assert url in msg["text"]  # sent as plain text, markup characters and all
        buttons = msg["reply_markup"]["inline_keyboard"][0]
        assert [b["text"] for b in buttons] == ["Allow", "Allow 30 min", "Deny"]
        tg.press(PAIRED, buttons[0]["callback_data"])
        reply = read_lines(sock, 1)[0]
    assert reply["status"] == "ok"
    answered = tg.api.wait("answerCallbackQuery")[-1]
    assert answered["text"] == "Allowed."
    tg.api.wait("editMessageText")
    assert any(f"Allowed by telegram telegram:{PAIRED}" in e for e in tg.edits())
    recs = journal.wait_entries(
        1, CLAWVISOR_INTENT_ID=rid, CLAWVISOR_KIND="decision", CLAWVISOR_OUTCOME="approved"
    )
    assert recs[-1]["CLAWVISOR_APPROVER"] == f"telegram telegram:{PAIRED}"


def test_an_unpaired_users_press_does_nothing_and_is_audited(tg, journal):
    url = f"https://tg.example/{uuid.uuid4().hex[:6]}"
    sock, _ = tg.ask(url)
    with sock:
        msg = tg.wait_message(url)
        data = msg["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        before = len(tg.api.wait("answerCallbackQuery"))
        tg.press(STRANGER, data, chat=PAIRED)
        answered = tg.api.wait("answerCallbackQuery", before + 1)[-1]
        assert "not paired" in answered["text"]
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(10)  # still pending
        recs = journal.wait_entries(1, CLAWVISOR_OUTCOME="ignored_press", CLAWVISOR_KIND="approval")
        assert any(f"telegram user {STRANGER}" in r["MESSAGE"] for r in recs)
        deny = msg["reply_markup"]["inline_keyboard"][0][2]["callback_data"]
        tg.press(PAIRED, deny)
        sock.settimeout(10)
        assert read_lines(sock, 1)[0]["error"]["code"] == "approval_denied"


def test_forged_callback_data_is_rejected_and_audited(tg, journal):
    url = f"https://tg.example/{uuid.uuid4().hex[:6]}"
    sock, _ = tg.ask(url)
    with sock:
        msg = tg.wait_message(url)
        allow = msg["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        request = allow.split("|")[0]
        before = len(tg.api.wait("answerCallbackQuery"))
        for forged in (f"{request}|a|{'0' * 20}", f"{request}|t|" + allow.split("|")[2], "garbage"):
            tg.press(PAIRED, forged)
        answers = tg.api.wait("answerCallbackQuery", before + 3)[-3:]
        assert all(a["text"] == "This button is not valid." for a in answers)
        # the genuine button, pressed in another chat, is not valid there either
        tg.press(PAIRED, allow, chat=999)
        tg.api.wait("answerCallbackQuery", before + 4)
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(10)
        recs = journal.wait_entries(4, CLAWVISOR_OUTCOME="forged_callback")
        assert len(recs) >= 4
        tg.press(PAIRED, msg["reply_markup"]["inline_keyboard"][0][2]["callback_data"])
        sock.settimeout(10)
        assert read_lines(sock, 1)[0]["error"]["code"] == "approval_denied"


def test_timed_out_and_answered_elsewhere_edit_the_message(tg):
    sock, _ = tg.ask("https://timeout.example/tg")
    with sock:
        tg.wait_message("https://timeout.example/tg")
        assert read_lines(sock, 1)[0]["error"]["code"] == "approval_timeout"
    url = f"https://tg.example/{uuid.uuid4().hex[:6]}"
    sock, _ = tg.ask(url)
    with sock:
        tg.wait_message(url)
        with connect_as(tg.daemon.control, None) as c:
            c.sendall(b'{"id":"p","op":"pending"}\n')
            [p] = [q for q in read_lines(c, 1)[0]["result"]["pending"] if q["params"]["url"] == url]
            c.sendall(
                json.dumps(
                    {
                        "id": "v",
                        "op": "verdict",
                        "request": p["id"],
                        "digest": p["digest"],
                        "allow": True,
                    }
                ).encode()
                + b"\n"
            )
            read_lines(c, 1)
        assert read_lines(sock, 1)[0]["status"] == "ok"
    deadline = time.monotonic() + 10
    while not (
        any("Timed out: denied" in e for e in tg.edits())
        and any("Answered elsewhere: allowed by cli uid:0" in e for e in tg.edits())
    ):
        assert time.monotonic() < deadline, tg.edits()
        time.sleep(0.05)


@pytest.mark.reliability("isolation", "a Telegram token file others can read is refused")
def test_a_token_file_others_can_read_is_refused(tg, tmp_path):
    loose = tg.state.parent / "loose-token"
    loose.write_text(TOKEN)
    os.chown(loose, tg.user.uid, tg.user.gid)
    loose.chmod(0o644)
    out = subprocess.run(
        [
            str(rig.CLAWVISOR),
            "approver",
            "telegram",
            "--socket",
            str(tg.daemon.control),
            "--token-file",
            str(loose),
            "--api-base",
            tg.api.base,
            "--state-dir",
            str(tg.state),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        **rig.as_user(tg.user),
    )
    assert out.returncode == 2 and "must be mode 0600" in out.stdout
