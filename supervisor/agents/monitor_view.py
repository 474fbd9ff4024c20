"""`clawvisor monitor`: monitor events and alerts, live or from the kept event log.

Live, they come from the daemon's control socket; with `--since`, from the kept log
(LOG_DIR/events, supervisor/monitors/eventlog.py), then with `--follow` as they are
written. Formats: `text` (one coloured line each), `json` (one object per line), `cef`
(ArcSight Common Event Format, for a SIEM). Every value shown as text is made safe first
(a filename or an argv from a workload can carry escape sequences aimed at the
operator's terminal).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TextIO

from ..approvals.sanitize import visible
from ..monitors import eventlog
from ..wire.client import Client

Format = Literal["text", "json", "cef"]
SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
CEF_SEVERITY = {"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
#: Event fields with a CEF name of their own; the rest go into cs1 as JSON.
CEF_KEYS = {
    "workload": "suser",
    "uid": "suid",
    "pid": "spid",
    "comm": "sproc",
    "path": "filePath",
    "filename": "filePath",
    "addr": "dst",
    "port": "dpt",
    "error": "outcome",
}

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


def _cef_header(text: str) -> str:
    return visible(text).replace("\\", "\\\\").replace("|", "\\|")


def _cef_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=True)
    text = visible(text).replace("\\", "\\\\").replace("=", "\\=")
    return re.sub(r"[\r\n]", " ", text)


def cef_for(obj: dict[str, Any]) -> str:
    """One CEF line: CEF:0|vendor|product|version|signature|name|severity|extension."""
    kind = str(obj.get("kind", "event"))
    sev = str(obj.get("severity", "info"))
    signature = str(obj.get("alert") or kind)
    detail = obj.get("filename") or obj.get("path") or obj.get("addr") or ""
    name = f"{signature}: {obj.get('workload') or '-'} {kind} {detail}".strip()
    ext = [f"rt={int(float(obj.get('ts', time.time())) * 1000)}", f"cat={_cef_value(kind)}"]
    rest = {}
    for key, value in obj.items():
        if key in ("ts", "kind", "severity", "alert", "event"):
            continue
        cef = CEF_KEYS.get(key)
        if cef is not None and value is not None:
            ext.append(f"{cef}={_cef_value(value)}")
        else:
            rest[key] = value
    if obj.get("alert"):
        ext.append(f"act={_cef_value(obj['alert'])}")
    if rest:
        ext += ["cs1Label=fields", f"cs1={_cef_value(rest)}"]
    return (
        f"CEF:0|clawvisor|clawvisor|1|{_cef_header(signature)}|{_cef_header(name)}|"
        f"{CEF_SEVERITY.get(sev, 1)}|{' '.join(ext)}"
    )


def render(obj: dict[str, Any], fmt: Format, colour: bool) -> str:
    obj.pop("event", None)
    if fmt == "json":
        return json.dumps(obj, ensure_ascii=True)
    if fmt == "cef":
        return cef_for(obj)
    return line_for(obj, colour)


def parse_since(text: str, now: float | None = None) -> float:
    """`1h`, `30m`, `2d`, `45s` ago, or epoch seconds, as epoch seconds."""
    now = time.time() if now is None else now
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return float(text)


def wanted(
    obj: dict[str, Any], workload: str | None, kinds: list[str], severity: str, alerts_only: bool
) -> bool:
    if workload is not None and obj.get("workload") != workload:
        return False
    if kinds and obj.get("kind") not in kinds:
        return False
    if alerts_only and not obj.get("alert"):
        return False
    return SEVERITY_RANK.get(str(obj.get("severity", "info")), 0) >= SEVERITY_RANK[severity]


def from_log(
    directory: Path,
    since: float,
    *,
    follow: bool,
    workload: str | None,
    kinds: list[str],
    severity: str,
    alerts_only: bool,
    fmt: Format,
    out: TextIO = sys.stdout,
    lines: Iterable[dict[str, Any]] | None = None,
) -> int:
    """Print the kept events from `since` on (and, with `follow`, the new ones)."""
    colour = out.isatty() and fmt == "text"
    source = lines if lines is not None else eventlog.read(directory, since, follow=follow)
    try:
        for obj in source:
            if "severity" not in obj:
                obj["severity"] = "info"
            if wanted(obj, workload, kinds, severity, alerts_only):
                print(render(obj, fmt, colour), file=out, flush=True)
    except KeyboardInterrupt:
        return 0
    return 0


def run(
    socket: Path,
    *,
    workload: str | None,
    kinds: list[str],
    severity: str,
    alerts_only: bool,
    as_json: bool,
    out: TextIO = sys.stdout,
    fmt: Format | None = None,
) -> int:
    """Subscribe and print until interrupted (or the daemon goes away)."""
    fmt = fmt or ("json" if as_json else "text")
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
        colour = out.isatty() and fmt == "text"
        while True:
            try:
                raw = client.read_line()
            except ConnectionError:
                print("clawvisor monitor: the daemon closed the connection", file=sys.stderr)
                return 1
            obj = json.loads(raw)
            if obj.get("event") != "monitor":
                continue
            print(render(obj, fmt, colour), file=out, flush=True)
