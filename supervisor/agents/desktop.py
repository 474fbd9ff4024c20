"""`clawvisor approver desktop`: freedesktop notifications in the operator's session.

Runs as the operator, talks to the session bus with jeepney (pure Python, asyncio,
no compiled parts to audit) and to control.sock. Each pending request becomes a
critical, resident notification with Allow, Allow 30 min (when the rule lets an
approval grant that long) and Deny; the button pressed becomes a verdict on exactly the
request shown. A notification closed without an action gives no verdict: the request
then waits for another approver or times out to deny.

With several VMs (`--socket vm1=PATH ...`, `--fleet FILE`) every notification names its
VM ("[vm1] alpha wants ...") and is kept by (VM, request id): an action goes to the VM
whose request it showed, and an id one VM sends never touches another VM's request.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TextIO
from xml.sax.saxutils import escape

from jeepney import DBusAddress, MatchRule, MessageType, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io.asyncio import DBusRouter, Proxy, open_dbus_router
from jeepney.low_level import HeaderFields

from ..wire.control import NoticeEvent, PendingEvent, PendingView, WithdrawnEvent
from .fleet_link import Down, Fleet, Up, alongside, where
from .prompt import body, offers_thirty_minutes, title

NOTIFICATIONS = DBusAddress(
    "/org/freedesktop/Notifications",
    bus_name="org.freedesktop.Notifications",
    interface="org.freedesktop.Notifications",
)
_CHOICES = {"allow": (True, "once"), "allow-30m": (True, "30m"), "deny": (False, "once")}


class DesktopAgent:
    """Keeps notifications and pending requests in step."""

    def __init__(self, link: Fleet, router: DBusRouter, out: TextIO) -> None:
        self.link = link
        self.router = router
        self.out = out
        self.markup = False
        #: (vm, request id) -> notification id.
        self.by_request: dict[tuple[str, str], int] = {}
        self.by_notification: dict[int, PendingView] = {}
        #: notification id -> the VM whose request it shows.
        self.vm_of: dict[int, str] = {}

    async def start(self) -> None:
        reply = await self.router.send_and_get_reply(
            new_method_call(NOTIFICATIONS, "GetCapabilities")
        )
        caps = reply.body[0] if reply.header.message_type == MessageType.method_return else []
        # A server that renders body markup would render `<b>` in a URL: escape it.
        self.markup = "body-markup" in caps
        if "actions" not in caps:
            print(
                "clawvisor: the notification server does not support actions; "
                "requests will be shown but must be answered elsewhere",
                file=self.out,
            )

    def text(self, p: PendingView) -> str:
        text = body(p)
        return escape(text) if self.markup else text

    async def show(self, p: PendingView, vm: str = "") -> None:
        # The same request again (more waiting, a new digest): it replaces its notification.
        replaces = self.by_request.pop((vm, p.id), 0)
        if replaces:
            self.by_notification.pop(replaces, None)
            self.vm_of.pop(replaces, None)
        actions = ["allow", "Allow"]
        if offers_thirty_minutes(p):
            actions += ["allow-30m", "Allow 30 min"]
        actions += ["deny", "Deny"]
        hints = {
            "urgency": ("y", 2),
            "resident": ("b", True),
            "category": ("s", "clawvisor.approval"),
        }
        line = where(vm) + title(p)
        summary = escape(line) if self.markup else line
        msg = new_method_call(
            NOTIFICATIONS,
            "Notify",
            "susssasa{sv}i",
            ("clawvisor", replaces, "dialog-warning", summary, self.text(p), actions, hints, 0),
        )
        reply = await self.router.send_and_get_reply(msg)
        if reply.header.message_type != MessageType.method_return:
            print(f"clawvisor: Notify failed: {reply.body}", file=self.out, flush=True)
            return
        nid = int(reply.body[0])
        self.by_request[(vm, p.id)] = nid
        self.by_notification[nid] = p
        self.vm_of[nid] = vm

    async def withdraw(self, request_id: str, vm: str = "") -> None:
        nid = self.by_request.pop((vm, request_id), None)
        if nid is None:
            return
        self.by_notification.pop(nid, None)
        self.vm_of.pop(nid, None)
        await self.router.send_and_get_reply(
            new_method_call(NOTIFICATIONS, "CloseNotification", "u", (nid,))
        )

    async def invoked(self, nid: int, key: str) -> None:
        p = self.by_notification.get(nid)
        choice = _CHOICES.get(key)
        if p is None or choice is None:
            return
        allow, grant = choice
        vm = self.vm_of.get(nid, "")
        try:
            reply = await self.link.call(
                "verdict",
                vm=vm,
                request=p.id,
                digest=p.digest,
                allow=allow,
                agent="desktop",
                grant=grant,
            )
        except ConnectionError as exc:
            why = str(exc)
        else:
            if reply.status == "ok":
                return
            why = reply.error.message if reply.error else "?"
        print(f"clawvisor: {where(vm)}verdict on {p.id} not taken: {why}", file=self.out,
              flush=True)  # fmt: skip

    def closed(self, nid: int) -> None:
        p = self.by_notification.pop(nid, None)
        vm = self.vm_of.pop(nid, "")
        if p is not None:
            self.by_request.pop((vm, p.id), None)  # dismissed: no verdict from this agent

    async def follow_daemon(self) -> None:
        while (item := await self.link.events.get()) is not None:
            vm, event = item
            if isinstance(event, Up):
                for p in event.pending:
                    await self.show(p, vm)
            elif isinstance(event, Down):
                print(f"clawvisor: {self.link.lost(vm, event.why)}", file=self.out, flush=True)
                for key in [k for k in self.by_request if k[0] == vm]:
                    await self.withdraw(key[1], vm)  # nobody there to answer them
            elif isinstance(event, PendingEvent):
                await self.show(event.request, vm)
            elif isinstance(event, WithdrawnEvent):
                await self.withdraw(event.id, vm)
            elif isinstance(event, NoticeEvent):
                await self.notice(event, vm)

    async def notice(self, event: NoticeEvent, vm: str = "") -> None:
        summary = f"{where(vm)}{event.workload} says"
        text = escape(event.message) if self.markup else event.message
        await self.router.send_and_get_reply(
            new_method_call(
                NOTIFICATIONS,
                "Notify",
                "susssasa{sv}i",
                (
                    "clawvisor",
                    0,
                    "dialog-information",
                    summary,
                    text,
                    [],
                    {"urgency": ("y", 1)},
                    -1,
                ),
            )
        )

    async def follow_bus(self, signals: asyncio.Queue[object]) -> None:
        while True:
            msg = await signals.get()
            member = msg.header.fields.get(HeaderFields.member)  # type: ignore[attr-defined]
            await self.signal(member, msg.body)  # type: ignore[attr-defined]

    async def signal(self, member: object, body: object) -> None:
        """One signal from the notification server; a body of the wrong shape is ignored."""
        if not isinstance(body, tuple | list):
            return
        if member == "ActionInvoked" and len(body) == 2:
            nid, key = body
            if isinstance(nid, int) and isinstance(key, str):
                await self.invoked(nid, key)
        elif member == "NotificationClosed" and body and isinstance(body[0], int):
            self.closed(body[0])


async def run(
    socket: Path | dict[str, Path], *, bus: str = "SESSION", out: TextIO = sys.stdout
) -> int:
    """Subscribe as the desktop agent (to one daemon, or to each VM's: `{name: socket}`)
    and mirror requests as notifications until stopped, or until every daemon is gone
    (1; each is named as it goes, and the others are still served)."""
    async with Fleet(socket, "desktop") as fleet, open_dbus_router(bus) as router:
        agent = DesktopAgent(fleet, router, out)
        await agent.start()
        rule = MatchRule(
            type="signal", interface=NOTIFICATIONS.interface, path=NOTIFICATIONS.object_path
        )
        await Proxy(message_bus, router).AddMatch(rule)
        with router.filter(rule, bufsize=256) as signals:
            print(
                f"clawvisor approver (desktop): showing requests as notifications"
                f"{fleet.following()}",
                file=out,
                flush=True,
            )
            await alongside(agent.follow_daemon(), agent.follow_bus(signals))
    return 1
