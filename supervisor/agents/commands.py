"""`clawvisor pending | approve | deny | grants | status`: one command, one answer, then exit."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import msgspec

from ..wire.client import Client
from ..wire.common import Reply
from ..wire.control import GrantList, GrantView, PendingList, PendingView
from .prompt import body, title

EXIT_OK, EXIT_REFUSED, EXIT_ERROR = 0, 1, 2


def _call(socket: Path, op: str, **fields: Any) -> Reply:
    with Client(socket, timeout=30) as client:
        reply, _ = client.control(op, **fields)
    return reply


def _views(reply: Reply) -> list[PendingView]:
    return msgspec.convert(reply.result["pending"], list[PendingView])


def _fail(reply: Reply, out: TextIO) -> int:
    message = reply.error.message if reply.error else "failed"
    print(f"clawvisor: {message}", file=out)
    return EXIT_REFUSED


def _json(struct: msgspec.Struct, out: TextIO) -> int:
    print(msgspec.json.encode(struct).decode(), file=out)
    return EXIT_OK


def pending(
    socket: Path, show: str | None, out: TextIO = sys.stdout, *, as_json: bool = False
) -> int:
    """List pending requests, or one in full."""
    reply = _call(socket, "show", request=show) if show else _call(socket, "pending")
    if reply.status != "ok":
        return _fail(reply, out)
    views = _views(reply)
    if as_json:
        return _json(PendingList(pending=views), out)
    if not views:
        print("no pending requests", file=out)
    for p in views:
        print(f"{p.id}  {title(p)}", file=out)
        for line in body(p).splitlines():
            print(f"    {line}", file=out)
    return EXIT_OK


def verdict(
    socket: Path,
    request: str,
    *,
    allow: bool,
    grant: str = "once",
    reason: str | None = None,
    release_all: bool = False,
    confirm: Callable[[str], str] | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Show the request, then allow or deny exactly what was shown (its digest); with
    `release_all`, an approval releases every identical request shown as waiting.
    With `confirm` (a terminal's `input`), an approval goes ahead only on a "y"."""
    with Client(socket, timeout=30) as client:
        shown, _ = client.control("show", request=request)
        if shown.status != "ok":
            return _fail(shown, out)
        [p] = _views(shown)
        print(f"{p.id}  {title(p)}", file=out)
        for line in body(p).splitlines():
            print(f"    {line}", file=out)
        fields: dict[str, Any] = {
            "request": p.id,
            "digest": p.digest,
            "allow": allow,
            "agent": "cli",
            "grant": grant,
            "release": p.waiting if release_all else 1,
        }
        if reason:
            fields["reason"] = reason
        if allow and confirm is not None:
            many = f" (and {p.waiting - 1} identical)" if release_all and p.waiting > 1 else ""
            if confirm(f"approve {p.id}{many} as shown? [y/N] ").strip().lower() not in (
                "y",
                "yes",
            ):
                print("not approved: nothing was sent", file=out)
                return EXIT_REFUSED
        reply, _ = client.control("verdict", **fields)
    if reply.status != "ok":
        return _fail(reply, out)
    r = reply.result
    if not allow:
        print("denied", file=out)
    elif r["decided"]:
        left = r.get("still_waiting", 0)
        print(
            "approved"
            + (f" (granted {grant})" if grant != "once" else "")
            + f": released {r.get('released', 1)}"
            + (f"; {left} identical still waiting" if left else ""),
            file=out,
        )
    else:
        print(f"approval recorded: {r['votes']} of {r['quorum']} needed", file=out)
    return EXIT_OK


def expiry(expires: float | None, now: float) -> str:
    """`always`, or how long a grant has left."""
    if expires is None or math.isinf(expires):
        return "always"
    left = max(0, int(expires - now))
    if left >= 3600:
        return f"{left // 3600}h{left % 3600 // 60:02d}m left"
    return f"{left // 60}m{left % 60:02d}s left"


def grants(
    socket: Path, revoke: str | None, out: TextIO = sys.stdout, *, as_json: bool = False
) -> int:
    """List grants, or revoke one."""
    reply = _call(socket, "revoke", grant=revoke) if revoke else _call(socket, "grants")
    if reply.status != "ok":
        return _fail(reply, out)
    views = msgspec.convert(reply.result["grants"], list[GrantView])
    if as_json:
        return _json(GrantList(grants=views), out)
    if revoke:
        print(f"revoked {revoke}", file=out)
        return EXIT_OK
    if not views:
        print("no grants", file=out)
    now = time.time()
    for g in views:
        print(
            f"{g.id}  {g.workload} {g.action} -> {g.target or '-'}  {g.params}  "
            f"[{expiry(g.expires, now)}; rule {g.rule}; by {', '.join(g.approvers)}]",
            file=out,
        )
    return EXIT_OK


def status(socket: Path, out: TextIO = sys.stdout, *, as_json: bool = False) -> int:
    """The daemon's state as control.sock gives it to operators (every workload)."""
    from executors.status import Result

    reply = _call(socket, "status")
    if reply.status != "ok":
        return _fail(reply, out)
    r = msgspec.convert(reply.result, Result)
    if as_json:
        return _json(r, out)
    pol = r.policy
    print(f"clawvisor {r.version}, up {r.uptime:.0f} s", file=out)
    print(
        f"policy: {pol.rules} rules from {len(pol.files)} files"
        + (f" -- DENY-ALL: {pol.error}" if pol.error else ""),
        file=out,
    )
    print(f"workloads: {', '.join(r.workloads) or '(none)'}; grants in force: {r.grants}", file=out)
    for m in r.monitors:
        print(f"monitor {m.name}: {m.state}" + (f" ({m.detail})" if m.detail else ""), file=out)
    return EXIT_OK
