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


async def _merge(name: str, link: ControlLink, into: asyncio.Queue[tuple[str, object]]) -> None:
    """Forward one VM's events into the shared queue, tagged with its name (None: gone)."""
    while True:
        event = await link.events.get()
        await into.put((name, event))
        if event is None:
            return


async def run(
    socket: Path | dict[str, Path],
    *,
    read_line: Callable[[], str] | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Subscribe (to one daemon, or to each VM's: `{name: socket}`) and put each pending
    request to the person at the terminal; a prompt names its VM, and the verdict goes
    back to the daemon that asked."""
    sockets = socket if isinstance(socket, dict) else {"": socket}
    links: dict[str, ControlLink] = {}
    # By (vm, id): an update to a shown request (more waiting, a new digest) replaces it.
    queue: dict[tuple[str, str], PendingView] = {}
    events: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
    forwarders = []
    try:
        for name, path in sockets.items():
            link = await ControlLink.open(path)
            links[name] = link
            reply = await link.call("subscribe", agent="cli")
            if reply.status != "ok":
                why = reply.error.message if reply.error else "refused"
                print(f"clawvisor: {name + ': ' if name else ''}{why}", file=out)
                return 1
            for p in msgspec.convert(reply.result["pending"], list[PendingView]):
                queue[(name, p.id)] = p
            forwarders.append(asyncio.get_running_loop().create_task(_merge(name, link, events)))
        return await _prompt(links, queue, events, read_line or sys.stdin.readline, out)
    finally:
        for task in forwarders:
            task.cancel()
        for link in links.values():
            await link.close()


def _take(
    name: str,
    event: object,
    queue: dict[tuple[str, str], PendingView],
    gone: dict[tuple[str, str], str],
    out: TextIO,
) -> None:
    where = f"[{name}] " if name else ""
    if isinstance(event, PendingEvent):
        queue[(name, event.request.id)] = event.request
    elif isinstance(event, WithdrawnEvent):
        gone[(name, event.id)] = event.reason
    elif isinstance(event, NoticeEvent):
        print(f"\n{where}notice from {event.workload}: {event.message}", file=out, flush=True)


async def _prompt(
    links: dict[str, ControlLink],
    queue: dict[tuple[str, str], PendingView],
    events: asyncio.Queue[tuple[str, object]],
    reader: Callable[[], str],
    out: TextIO,
) -> int:
    gone: dict[tuple[str, str], str] = {}
    names = [n for n in links if n]
    following = f" on {', '.join(names)}" if names else ""
    print(f"clawvisor approver (cli): waiting for requests{following}; Ctrl-C to stop",
          file=out, flush=True)  # fmt: skip
    while True:
        while not queue:
            name, event = await events.get()
            if event is None:
                print(f"clawvisor: {name + ': ' if name else ''}the daemon closed the connection",
                      file=out)  # fmt: skip
                return 1
            _take(name, event, queue, gone, out)
        key = next(iter(queue))
        p = queue.pop(key)
        if key in gone:
            continue
        name = key[0]
        where = f"[{name}] " if name else ""
        print(f"\n{where}{title(p)}\n{body(p)}", file=out)
        while True:
            print(question(p), end="", file=out, flush=True)
            line = await asyncio.to_thread(reader)
            if line == "":
                return 0  # end of input: nobody is there to answer
            choice = parse_answer(line, p)
            if choice is not None:
                break
            print(body(p), file=out)
        while not events.empty():
            n, event = events.get_nowait()
            if event is not None:
                _take(n, event, queue, gone, out)
        if key in gone:
            print(f"  already {gone[key]} elsewhere; your answer was not needed", file=out)
            continue
        allow, grant, release = choice
        result = await links[name].call(
            "verdict",
            request=p.id,
            digest=p.digest,
            allow=allow,
            agent="cli",
            grant=grant,
            release=release,
        )
        if result.status == "ok":
            print(f"  {where}allowed" if allow else f"  {where}denied", file=out, flush=True)
        else:
            why = result.error.message if result.error else "?"
            print(f"  not taken: {why}", file=out, flush=True)
