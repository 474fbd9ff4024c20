"""`clawvisor approver telegram`: pending requests as Telegram messages with buttons.

A separate process under its own user (the daemon never opens a network connection).
It long-polls the Bot API with a small httpx client: the five Bot API calls it needs
(getUpdates, sendMessage, answerCallbackQuery, editMessageText) do not justify a bot
framework, and httpx is maintained, typed and asyncio-native. Text is sent without a
parse mode, so nothing in a request is ever rendered as markup.

Only paired Telegram user ids may answer. Pairing: `clawvisor approver telegram pair`
writes a one-time code to the state directory and prints it; the operator sends
`/pair CODE` to the bot in a private chat; the running agent records their user id.
Button data is `VM|REQUEST|CHOICE|MAC` (VM: the VM's place in the list the agent was
given, which keeps it within Telegram's 64 bytes), the MAC an HMAC (key in the state
directory) over the VM's name, the request, the choice and the chat the message went
to, so a forged or replayed callback is recognised, and a button of one VM's request
can never decide another VM's (even one holding the same request id). Presses from
anyone else, and forged ones, are ignored and reported to every daemon the agent
follows, which audit them.

One bot serves every VM (only one process may poll a bot token): `--socket vm1=PATH`
(repeatable) or `--fleet FILE`; every message names its VM.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import stat
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import msgspec

from ..persist import read_or_none, write_atomic
from ..wire.control import NoticeEvent, PendingEvent, PendingView, WithdrawnEvent
from .fleet_link import Down, Fleet, Up, alongside, where
from .prompt import body, offers_thirty_minutes, title

DEFAULT_API = "https://api.telegram.org"
DEFAULT_STATE = Path("/var/lib/clawvisor-telegram")
DEFAULT_TOKEN = Path("/etc/clawvisor/telegram.token")
POLL_SECONDS = 25
_CHOICES = {"a": (True, "once"), "t": (True, "30m"), "d": (False, "once")}
_BUTTON = re.compile(r"(0|[1-9][0-9]{0,2})\|(p-[0-9a-f]{10})\|([atd])\|([0-9a-f]{20})")
_OUTCOME = {
    "approved": "Allowed",
    "denied": "Denied",
    "timeout": "Timed out: denied",
    "withdrawn": "Withdrawn: the agent stopped waiting",
    "policy_changed": "Withdrawn: the policy changed",
    "unavailable": "Daemon stopped: denied",
}


class TelegramError(Exception):
    """The Bot API refused a call or could not be reached."""


class Pairing(msgspec.Struct):
    """A one-time pairing code and when it stops being valid."""

    code: str
    expires: float


@dataclass
class AgentState:
    """Paired users, the MAC key and the pairing code, all in one 0700 directory."""

    directory: Path
    paired: set[int] = field(default_factory=set)
    key: bytes = b""

    def load(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        raw = read_or_none(self.directory / "paired.json")
        self.paired = set(msgspec.json.decode(raw, type=list[int])) if raw else set()
        key = read_or_none(self.directory / "hmac.key")
        if key is None or len(key) < 32:
            key = secrets.token_bytes(32)
            write_atomic(self.directory / "hmac.key", key)
        self.key = key

    def add_paired(self, user_id: int) -> None:
        self.paired.add(user_id)
        write_atomic(self.directory / "paired.json", msgspec.json.encode(sorted(self.paired)))

    def pairing(self) -> Pairing | None:
        raw = read_or_none(self.directory / "pairing.json")
        if not raw:
            return None
        p = msgspec.json.decode(raw, type=Pairing)
        return p if p.expires > time.time() else None

    def clear_pairing(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / "pairing.json").unlink()

    def mac(self, vm: str, request: str, choice: str, chat: int) -> str:
        msg = f"{vm}|{request}|{choice}|{chat}".encode()
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()[:20]

    def button(self, vms: Sequence[str], vm: str, request: str, choice: str, chat: int) -> str:
        """The callback data of one button (at most 39 bytes of Telegram's 64)."""
        return f"{vms.index(vm)}|{request}|{choice}|{self.mac(vm, request, choice, chat)}"

    def check(
        self, data: str, chat: int, vms: Sequence[str] = ("",)
    ) -> tuple[str, str, str] | None:
        """(vm, request, choice) of genuine button data for this chat, else None."""
        m = _BUTTON.fullmatch(data)
        if m is None or int(m[1]) >= len(vms):
            return None
        vm, request, choice = vms[int(m[1])], m[2], m[3]
        if not hmac.compare_digest(m[4], self.mac(vm, request, choice, chat)):
            return None
        return vm, request, choice


def read_token(path: Path) -> str:
    """The bot token from a file only its owner can read; refuse anything looser."""
    st = path.stat()
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(
            f"{path} must be mode 0600 (it is "
            f"{stat.S_IMODE(st.st_mode):04o}): it holds the bot token"
        )
    if st.st_uid != os.geteuid():
        raise PermissionError(f"{path} must be owned by the user running the agent")
    token = path.read_text().strip()
    if not token or any(c.isspace() for c in token):
        raise ValueError(f"{path} does not hold a bot token")
    return token


class BotApi:
    """The few Bot API methods the agent uses."""

    def __init__(self, base: str, token: str) -> None:
        self._client = httpx.AsyncClient(
            base_url=f"{base.rstrip('/')}/bot{token}/",
            timeout=httpx.Timeout(10.0, read=POLL_SECONDS + 10.0),
        )

    async def call(self, method: str, **params: Any) -> Any:
        try:
            response = await self._client.post(method, json=params)
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise TelegramError(f"{method}: {type(exc).__name__}") from None
        if not isinstance(data, dict) or not data.get("ok"):
            raise TelegramError(
                f"{method}: {data.get('description') if isinstance(data, dict) else data}"
            )
        return data.get("result")

    async def close(self) -> None:
        await self._client.aclose()


class TelegramAgent:
    """Mirrors pending requests into paired chats and turns presses into verdicts."""

    def __init__(
        self,
        link: Fleet,
        api: BotApi,
        state: AgentState,
        out: TextIO,
        vms: Sequence[str] = ("",),
    ) -> None:
        self.link = link
        self.api = api
        self.state = state
        self.out = out
        self.vms = list(vms)
        #: By (vm, request id): an id from one VM never names another VM's request.
        self.views: dict[tuple[str, str], PendingView] = {}
        self.messages: dict[tuple[str, str], list[tuple[int, int]]] = {}

    def say(self, text: str) -> None:
        print(f"clawvisor approver (telegram): {text}", file=self.out, flush=True)

    async def show(self, p: PendingView, vm: str = "") -> None:
        self.views[(vm, p.id)] = p
        text = f"{where(vm)}{title(p)}\n{body(p)}"
        for chat in sorted(self.state.paired):

            def button(label: str, choice: str, chat: int = chat) -> dict[str, str]:
                data = self.state.button(self.vms, vm, p.id, choice, chat)
                return {"text": label, "callback_data": data}

            row = [button("Allow", "a")]
            if offers_thirty_minutes(p):
                row.append(button("Allow 30 min", "t"))
            row.append(button("Deny", "d"))
            try:
                sent = await self.api.call(
                    "sendMessage", chat_id=chat, text=text, reply_markup={"inline_keyboard": [row]}
                )
            except TelegramError as exc:
                self.say(f"could not send {where(vm)}{p.id} to chat {chat}: {exc}")
                continue
            self.messages.setdefault((vm, p.id), []).append((chat, int(sent["message_id"])))

    async def withdraw(self, event: WithdrawnEvent, vm: str = "") -> None:
        outcome = _OUTCOME[event.reason]
        if event.by and event.reason in ("approved", "denied"):
            here = event.by.startswith("telegram ")
            outcome = (
                f"{outcome} by {event.by}"
                if here
                else f"Answered elsewhere: {outcome.lower()} by {event.by}"
            )
        await self.close_message(vm, event.id, outcome)

    async def close_message(self, vm: str, request: str, outcome: str) -> None:
        """Edit the messages of one VM's request to its outcome: no buttons any more."""
        p = self.views.pop((vm, request), None)
        sent = self.messages.pop((vm, request), [])
        if p is None:
            return
        text = f"{where(vm)}{title(p)}\n{body(p)}\n\n-> {outcome}"
        for chat, message_id in sent:
            with contextlib.suppress(TelegramError):
                await self.api.call(
                    "editMessageText", chat_id=chat, message_id=message_id, text=text
                )

    async def callback(self, cq: dict[str, Any]) -> None:
        user = int(cq.get("from", {}).get("id", 0))
        chat = int(cq.get("message", {}).get("chat", {}).get("id", 0))
        data = str(cq.get("data", ""))
        answer_text = ""
        try:
            if user not in self.state.paired:
                answer_text = "You are not paired with this clawvisor."
                await self.report(
                    "ignored_press", f"telegram user {user} (not paired) pressed {data[:40]!r}"
                )
                return
            checked = self.state.check(data, chat, self.vms)
            if checked is None:
                answer_text = "This button is not valid."
                await self.report(
                    "forged_callback", f"telegram user {user} sent callback data {data[:64]!r}"
                )
                return
            vm, request, choice = checked
            p = self.views.get((vm, request))
            if p is None:
                answer_text = "This request is no longer pending."
                return
            allow, grant = _CHOICES[choice]
            try:
                reply = await self.link.call(
                    "verdict",
                    vm=vm,
                    request=request,
                    digest=p.digest,
                    allow=allow,
                    agent="telegram",
                    grant=grant,
                    detail=str(user),
                )
            except ConnectionError as exc:
                answer_text = f"Not taken: {exc}"[:190]
                return
            if reply.status == "ok":
                answer_text = "Allowed." if allow else "Denied."
            else:
                answer_text = (reply.error.message if reply.error else "Not taken.")[:190]
        finally:
            with contextlib.suppress(TelegramError):
                await self.api.call(
                    "answerCallbackQuery", callback_query_id=cq.get("id"), text=answer_text
                )

    async def message(self, msg: dict[str, Any]) -> None:
        text = str(msg.get("text", "")).strip()
        chat = msg.get("chat", {})
        user = int(msg.get("from", {}).get("id", 0))
        if not text.startswith("/pair ") or chat.get("type") != "private":
            return
        pairing = self.state.pairing()
        offered = text.split(maxsplit=1)[1].strip()
        if pairing is None or not hmac.compare_digest(offered, pairing.code):
            await self.report(
                "ignored_press", f"telegram user {user} sent a wrong or expired pairing code"
            )
            return
        self.state.clear_pairing()
        self.state.add_paired(user)
        self.say(f"paired telegram user {user}")
        with contextlib.suppress(TelegramError):
            await self.api.call(
                "sendMessage",
                chat_id=int(chat.get("id", user)),
                text="Paired: requests needing approval will appear here.",
            )

    async def report(self, what: str, detail: str) -> None:
        """Tell every daemon followed (each audits it): the bot is every VM's."""
        self.say(f"{what}: {detail}")
        for vm in self.vms:
            with contextlib.suppress(ConnectionError):
                await self.link.call(
                    "report", vm=vm, agent="telegram", what=what, detail=detail[:256]
                )

    async def poll(self) -> None:
        offset = 0
        backoff = 1.0
        while True:
            try:
                updates = await self.api.call(
                    "getUpdates",
                    offset=offset,
                    timeout=POLL_SECONDS,
                    allowed_updates=["message", "callback_query"],
                )
            except TelegramError as exc:
                self.say(f"getUpdates failed ({exc}); retrying in {backoff:g} s")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 1.0
            for update in updates if isinstance(updates, list) else []:
                if isinstance(update, dict) and isinstance(update.get("update_id"), int):
                    offset = max(offset, update["update_id"] + 1)
                await self.handle(update)

    async def handle(self, update: object) -> None:
        """One update as Telegram sent it: whatever its shape, handled or reported, never raised."""
        try:
            if not isinstance(update, dict):
                raise TypeError(f"an update that is not an object: {type(update).__name__}")
            if "callback_query" in update:
                await self.callback(update["callback_query"])
            elif "message" in update:
                await self.message(update["message"])
        except (TelegramError, ConnectionError, ValueError, TypeError, AttributeError) as exc:
            uid = update.get("update_id") if isinstance(update, dict) else None
            self.say(f"update {uid!r:.40} not handled: {exc!s:.200}")

    async def follow_daemon(self) -> None:
        while (item := await self.link.events.get()) is not None:
            vm, event = item
            if isinstance(event, Up):
                for p in event.pending:
                    await self.show(p, vm)
            elif isinstance(event, Down):
                self.say(self.link.lost(vm, event.why))
                for key in [k for k in self.views if k[0] == vm]:
                    await self.close_message(vm, key[1], "Its daemon went away: not answered")
            elif isinstance(event, PendingEvent):
                await self.show(event.request, vm)
            elif isinstance(event, WithdrawnEvent):
                await self.withdraw(event, vm)
            elif isinstance(event, NoticeEvent):
                for chat in sorted(self.state.paired):
                    with contextlib.suppress(TelegramError):
                        await self.api.call(
                            "sendMessage",
                            chat_id=chat,
                            text=f"{where(vm)}{event.workload} says:\n{event.message}",
                        )


async def run(
    socket: Path | dict[str, Path],
    *,
    token_file: Path,
    api_base: str,
    state_dir: Path,
    out: TextIO = sys.stdout,
) -> int:
    """Run the Telegram agent (one bot for one daemon, or for each VM's: `{name: socket}`)
    until every daemon is gone (1; each is named as it goes, the others still served)."""
    try:
        token = read_token(token_file)
    except (OSError, ValueError) as exc:
        print(f"clawvisor: {exc}", file=out)
        return 2
    state = AgentState(state_dir)
    state.load()
    api = BotApi(api_base, token)
    try:
        async with Fleet(socket, "telegram") as fleet:
            agent = TelegramAgent(fleet, api, state, out, fleet.names)
            if not state.paired:
                agent.say("no Telegram user is paired yet: run `clawvisor approver telegram pair`")
            agent.say(
                f"polling {api_base} for {len(state.paired)} paired user(s){fleet.following()}"
            )
            await alongside(agent.follow_daemon(), agent.poll())
        return 1
    finally:
        await api.close()


def pair(state_dir: Path, *, timeout: float, out: TextIO = sys.stdout) -> int:
    """Print a one-time code and wait until the running agent pairs someone with it."""
    state = AgentState(state_dir)
    state.load()
    before = set(state.paired)
    code = f"{secrets.randbelow(10**8):08d}"
    write_atomic(
        state_dir / "pairing.json",
        msgspec.json.encode(Pairing(code=code, expires=time.time() + timeout)),
    )
    print(
        f"Send this to your bot in a private chat within {int(timeout)} s:\n\n    /pair {code}\n",
        file=out,
        flush=True,
    )
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.5)
        state.load()
        new = state.paired - before
        if new:
            print(f"paired Telegram user(s): {', '.join(map(str, sorted(new)))}", file=out)
            return 0
    state.clear_pairing()
    print("no one paired before the code expired (is the agent running?)", file=out)
    return 1
