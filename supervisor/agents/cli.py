"""`clawvisor approver cli`: an interactive prompt in the terminal. The default answer is deny."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ..wire.control import NoticeEvent, PendingEvent, PendingView, WithdrawnEvent
from .fleet_link import Down, Fleet, Happening, Up, where
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
    socket: Path | dict[str, Path],
    *,
    read_line: Callable[[], str] | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Subscribe (to one daemon, or to each VM's: `{name: socket}`) and put each pending
    request to the person at the terminal; a prompt names its VM, and the verdict goes
    back to the daemon that asked. A VM whose daemon goes away is named and the others
    are still served; 1 once none is left."""
    async with Fleet(socket, "cli") as fleet:
        return await _prompt(fleet, read_line or sys.stdin.readline, out)


def _take(
    fleet: Fleet,
    vm: str,
    event: Happening,
    queue: dict[tuple[str, str], PendingView],
    gone: dict[tuple[str, str], str],
    out: TextIO,
) -> None:
    # By (vm, id): an update to a shown request (more waiting, a new digest) replaces it;
    # an id from one VM is never taken for another's.
    if isinstance(event, Up):
        for p in event.pending:
            queue[(vm, p.id)] = p
    elif isinstance(event, Down):
        for key in [k for k in queue if k[0] == vm]:
            del queue[key]
        print(f"\nclawvisor: {fleet.lost(vm, event.why)}", file=out, flush=True)
    elif isinstance(event, PendingEvent):
        queue[(vm, event.request.id)] = event.request
    elif isinstance(event, WithdrawnEvent):
        gone[(vm, event.id)] = event.reason
    elif isinstance(event, NoticeEvent):
        print(f"\n{where(vm)}notice from {event.workload}: {event.message}", file=out, flush=True)


async def _prompt(fleet: Fleet, reader: Callable[[], str], out: TextIO) -> int:
    queue: dict[tuple[str, str], PendingView] = {}
    gone: dict[tuple[str, str], str] = {}
    ended = False
    print(f"clawvisor approver (cli): waiting for requests{fleet.following()}; Ctrl-C to stop",
          file=out, flush=True)  # fmt: skip
    while True:
        while not queue:
            item = None if ended else await fleet.events.get()
            if item is None:
                return 1  # every daemon is gone (each was named as it went)
            _take(fleet, *item, queue, gone, out)
        key = next(iter(queue))
        p = queue.pop(key)
        if key in gone:
            continue
        vm = key[0]
        print(f"\n{where(vm)}{title(p)}\n{body(p)}", file=out)
        while True:
            print(question(p), end="", file=out, flush=True)
            line = await asyncio.to_thread(reader)
            if line == "":
                return 0  # end of input: nobody is there to answer
            choice = parse_answer(line, p)
            if choice is not None:
                break
            print(body(p), file=out)
        while not fleet.events.empty():
            item = fleet.events.get_nowait()
            if item is None:
                ended = True
            else:
                _take(fleet, *item, queue, gone, out)
        if key in gone:
            print(f"  already {gone[key]} elsewhere; your answer was not needed", file=out)
            continue
        allow, grant, release = choice
        try:
            result = await fleet.call(
                "verdict",
                vm=vm,
                request=p.id,
                digest=p.digest,
                allow=allow,
                agent="cli",
                grant=grant,
                release=release,
            )
        except ConnectionError as exc:
            print(f"  {where(vm)}not taken: {exc}", file=out, flush=True)
        else:
            if result.status == "ok":
                print(f"  {where(vm)}allowed" if allow else f"  {where(vm)}denied", file=out,
                      flush=True)  # fmt: skip
            else:
                why = result.error.message if result.error else "?"
                print(f"  {where(vm)}not taken: {why}", file=out, flush=True)
