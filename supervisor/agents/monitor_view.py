"""`clawvisor monitor`: the live view of monitor events and alerts.

Every value is made safe to show first (a filename or an argv from a workload can carry
escape sequences aimed at the operator's terminal).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ..approvals.sanitize import visible
from ..wire.client import Client

COLOURS = {
    "info": "\x1b[2m",
    "low": "\x1b[36m",
    "medium": "\x1b[33m",
    "high": "\x1b[31m",
    "critical": "\x1b[1;37;41m",
}
RESET = "\x1b[0m"
COMMON = (
    "event",
    "kind",
    "severity",
    "workload",
    "uid",
    "pid",
    "ppid",
    "comm",
    "ts",
    "alert",
    "responses",
)


def line_for(obj: dict[str, Any], colour: bool) -> str:
    """One human line for an event or alert."""
    when = time.strftime("%H:%M:%S", time.localtime(float(obj.get("ts", time.time()))))
    sev = str(obj.get("severity", "info"))
    fields = " ".join(
        f"{k}={visible(json.dumps(v, ensure_ascii=False))}"
        for k, v in obj.items()
        if k not in COMMON
    )
    head = (
        f"{when} {sev:8} {visible(str(obj.get('workload') or '-')):12} "
        f"{obj.get('kind', '?'):9} pid={obj.get('pid', '-')} "
        f"comm={visible(str(obj.get('comm') or '-'))}"
    )
    if obj.get("alert"):
        head += f"  ALERT {visible(str(obj['alert']))}"
        if obj.get("responses"):
            head += f" [{visible('; '.join(obj['responses']))}]"
    text = f"{head}  {fields}"
    return f"{COLOURS.get(sev, '')}{text}{RESET}" if colour else text


def run(
    socket: Path,
    *,
    workload: str | None,
    kinds: list[str],
    severity: str,
    alerts_only: bool,
    as_json: bool,
    out: TextIO = sys.stdout,
) -> int:
    """Subscribe and print until interrupted (or the daemon goes away)."""
    with Client(socket, timeout=None) as client:
        reply, _ = client.control(
            "monitor",
            workload=workload,
            kinds=kinds,
            min_severity=severity,
            alerts_only=alerts_only,
        )
        if reply.status != "ok":
            print(
                f"clawvisor monitor: {reply.error.message if reply.error else 'refused'}",
                file=sys.stderr,
            )
            return 1
        colour = out.isatty() and not as_json
        while True:
            try:
                raw = client.read_line()
            except ConnectionError:
                print("clawvisor monitor: the daemon closed the connection", file=sys.stderr)
                return 1
            obj = json.loads(raw)
            if obj.get("event") != "monitor":
                continue
            if as_json:
                obj.pop("event", None)
                print(json.dumps(obj, ensure_ascii=True), file=out, flush=True)
            else:
                print(line_for(obj, colour), file=out, flush=True)
