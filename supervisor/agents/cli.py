"""`clawvisor approver cli`: an interactive prompt in the terminal. The default answer is deny."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import msgspec

from ..wire.control import NoticeEvent, PendingEvent, PendingView, WithdrawnEvent
from .link import ControlLink
from .prompt import body, offers_thirty_minutes, title

QUESTION = "Allow? [y]es once / 30m / always / [N]o (default no): "


def question(p: PendingView) -> str:
    """The question for `p` (with "all N" when identical requests wait behind it)."""
    if p.waiting > 1:
        return f"Allow? [y]es once / all {p.waiting} / 30m / always / [N]o (default no): "
    return QUESTION


def parse_answer(text: str, p: PendingView) -> tuple[bool, str, int] | None:
    """(allow, grant, how many to release) for a typed answer; anything unclear is a
    deny. None: show again."""
    answer = text.strip().lower()
    if answer in ("y", "yes"):
        return True, "once", 1
    if p.waiting > 1 and answer in ("all", f"all {p.waiting}"):
        return True, "once", p.waiting
    if answer == "30m" and offers_thirty_minutes(p):
        return True, "30m", 1
    if answer == "always" and p.grant == "always":
        return True, "always", 1
    if answer in ("?", "show"):
        return None
    return False, "once", 1


async def run(
    socket: Path, *, read_line: Callable[[], str] | None = None, out: TextIO = sys.stdout
) -> int:
    """Subscribe and put each pending request to the person at the terminal."""
    link = await ControlLink.open(socket)
    reply = await link.call("subscribe", agent="cli")
    if reply.status != "ok":
        print(f"clawvisor: {reply.error.message if reply.error else 'refused'}", file=out)
        return 1
    # By id: an update to a shown request (more waiting, a new digest) replaces it.
    queue: dict[str, PendingView] = {
        p.id: p for p in msgspec.convert(reply.result["pending"], list[PendingView])
    }
    gone: dict[str, str] = {}
    reader = read_line or sys.stdin.readline
    print("clawvisor approver (cli): waiting for requests; Ctrl-C to stop", file=out, flush=True)
    try:
        while True:
            while not queue:
                event = await link.events.get()
                if event is None:
                    print("clawvisor: the daemon closed the connection", file=out)
                    return 1
                if isinstance(event, PendingEvent):
                    queue[event.request.id] = event.request
                elif isinstance(event, WithdrawnEvent):
                    gone[event.id] = event.reason
                elif isinstance(event, NoticeEvent):
                    print(f"\nnotice from {event.workload}: {event.message}", file=out, flush=True)
            p = queue.pop(next(iter(queue)))
            if p.id in gone:
                continue
            print(f"\n{title(p)}\n{body(p)}", file=out)
            while True:
                print(question(p), end="", file=out, flush=True)
                line = await asyncio.to_thread(reader)
                if line == "":
                    return 0  # end of input: nobody is there to answer
                choice = parse_answer(line, p)
                if choice is not None:
                    break
                print(body(p), file=out)
            while not link.events.empty():
                event = link.events.get_nowait()
                if isinstance(event, WithdrawnEvent):
                    gone[event.id] = event.reason
                elif isinstance(event, PendingEvent):
                    queue[event.request.id] = event.request
            if p.id in gone:
                print(f"  already {gone[p.id]} elsewhere; your answer was not needed", file=out)
                continue
            allow, grant, release = choice
            result = await link.call(
                "verdict",
                request=p.id,
                digest=p.digest,
                allow=allow,
                agent="cli",
                grant=grant,
                release=release,
            )
            if result.status == "ok":
                print("  allowed" if allow else "  denied", file=out, flush=True)
            else:
                print(
                    f"  not taken: {result.error.message if result.error else '?'}",
                    file=out,
                    flush=True,
                )
    finally:
        await link.close()
