"""`clawvisor audit log`: the trail from journald and the fallback file, filtered and shown
as text, JSON lines or ArcSight CEF (one line per record, for SIEMs).

Records from both sinks are merged by time. `--follow` keeps printing new ones from both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import heapq
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import msgspec

from ..state import daemon_version
from .chain import journal_fields
from .journal import readers

Format = Literal["text", "json", "cef"]
Fields = dict[str, Any]

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)\s*(?:ago)?\s*$")
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}

#: syslog PRIORITY (0 emerg .. 7 debug) to CEF severity (0 low .. 10 very high).
CEF_SEVERITY = {0: 10, 1: 10, 2: 9, 3: 7, 4: 5, 5: 3, 6: 1, 7: 0}
_PRIORITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


class SinceError(ValueError):
    """A --since value that is not a time."""


def parse_since(text: str, now: float | None = None) -> float:
    """`--since`: Unix seconds, ISO 8601 (local time unless it names a zone), or `10m` ago."""
    now = time.time() if now is None else now
    m = _RELATIVE.match(text)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise SinceError(
            f"--since {text!r}: give Unix seconds, an ISO 8601 time or an age such as 10m, 2h, 1d"
        ) from None
    return when.timestamp()


# --- reading --------------------------------------------------------------------------------


def from_journal(entry: Mapping[str, object]) -> Fields:
    """A journald entry as record fields (ts from the record, else journald's own time)."""
    fields: Fields = journal_fields(entry)
    fields["priority"] = _int(fields["priority"], 6)
    fields["message"] = str(fields["message"] or "")
    fields["seq"] = _int(fields.get("seq"), 0)
    if entry.get("_HOSTNAME"):  # journald's, on the VM that wrote it (kept by journal-remote)
        fields["host"] = str(entry["_HOSTNAME"])
    for key in ("uid", "pid"):
        if key in fields:
            fields[key] = _int(fields[key], -1)
    try:
        fields["ts"] = float(str(fields["ts"]))
    except (KeyError, ValueError):
        stamp = entry.get("__REALTIME_TIMESTAMP")
        fields["ts"] = stamp.timestamp() if isinstance(stamp, dt.datetime) else 0.0
    return fields


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


@dataclass(frozen=True)
class Query:
    """Which records to show: all of these that are given must hold (`kinds`: any one)."""

    workload: str | None = None
    since: float | None = None
    #: One daemon's chain (by default the local daemon's); None: every chain.
    chain: str | None = None
    intent: str | None = None
    kinds: tuple[str, ...] = ()
    #: One VM's records (its `_HOSTNAME`, on a collector); None: every host's.
    host: str | None = None

    def matches(self, rec: Fields) -> bool:
        """Whether `rec` is wanted."""
        if self.workload is not None and rec.get("workload") != self.workload:
            return False
        if self.host is not None and rec.get("host") != self.host:
            return False
        if self.chain is not None and rec.get("chain") != self.chain:
            return False
        if self.intent is not None and rec.get("intent_id") != self.intent:
            return False
        if self.kinds and rec.get("kind") not in self.kinds:
            return False
        return self.since is None or float(rec.get("ts") or 0.0) >= self.since

    def journal_readers(self, directory: Path | None = None) -> list[Any]:
        """Readers on the trail with the query's matches applied in journald itself."""
        found = readers(directory)
        for reader in found:
            reader.add_match(SYSLOG_IDENTIFIER="clawvisor")
            for field, value in (
                ("CLAWVISOR_WORKLOAD", self.workload),
                ("CLAWVISOR_CHAIN", self.chain),
                ("CLAWVISOR_INTENT_ID", self.intent),
                ("_HOSTNAME", self.host),
            ):
                if value is not None:
                    reader.add_match(**{field: value})
            for kind in self.kinds:  # matches on one field are alternatives
                reader.add_match(CLAWVISOR_KIND=kind)
            if self.since is not None:
                reader.seek_realtime(self.since)
        return found


def record_key(rec: Fields) -> tuple[str, str, int] | None:
    """A record's place in its chain (chain, segment, seq): the same record read from
    journald and from the fallback file (written there while journald was away, then
    resent) has one place, so it is shown once."""
    seq = rec.get("seq")
    chain = rec.get("chain")
    if not chain or not isinstance(seq, int) or seq <= 0:
        return None
    return (str(chain), str(rec.get("segment") or ""), seq)


class FallbackTail:
    """The JSONL fallback file, read from where the last read stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._partial = b""

    def read(self) -> list[Fields]:
        """Complete records appended since the last call."""
        try:
            with self.path.open("rb") as f:
                if f.seek(0, 2) < self.offset:  # rotated or truncated: start over
                    self.offset, self._partial = 0, b""
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        out: list[Fields] = []
        for line in lines:
            try:
                rec = msgspec.json.decode(line)["record"]
            except (msgspec.DecodeError, KeyError, TypeError):
                continue
            if isinstance(rec, dict):
                rec.setdefault("ts", 0.0)
                rec.setdefault("seq", 0)
                out.append(rec)
        return out


def records(
    fallback: Path,
    *,
    query: Query | None = None,
    workload: str | None = None,
    since: float | None = None,
    journal: bool = True,
    journal_dir: Path | None = None,
) -> Iterator[Fields]:
    """Matching records in journald (unless not `journal`) and the fallback, oldest
    first, each once.

    Streams: journald is read in its own (time) order and merged with the fallback file;
    a journal copy of a record the fallback file also holds is skipped (only the
    fallback's keys are kept in memory, and that file is small: it fills only while
    journald is unreachable).
    """
    q = query or Query(workload=workload, since=since)
    saved = sorted(filter(q.matches, FallbackTail(fallback).read()), key=_ts)
    in_fallback = {k for rec in saved if (k := record_key(rec)) is not None}
    sources: list[Any] = []
    if journal:
        with contextlib.suppress(ImportError, OSError):
            sources = q.journal_readers(journal_dir)

    def stream(reader: Any) -> Iterator[Fields]:
        for entry in reader:
            rec = from_journal(entry)
            if record_key(rec) not in in_fallback and q.matches(rec):
                yield rec

    try:
        yield from heapq.merge(*(stream(r) for r in sources), saved, key=_ts)
    finally:
        for reader in sources:
            reader.close()


def _ts(rec: Fields) -> float:
    return float(rec.get("ts") or 0.0)


#: How many recent records `follow` remembers to show each once (bounded memory).
_FOLLOW_SEEN = 100_000


def follow(
    fallback: Path,
    *,
    query: Query | None = None,
    workload: str | None = None,
    since: float | None = None,
    journal_dir: Path | None = None,
) -> Iterator[Fields]:
    """Matching records from `since` (default: now) on, then each new one, each once
    (never returns)."""
    q = query or Query(workload=workload, since=since)
    if q.since is None:
        q = dataclasses.replace(q, since=time.time())
    tail = FallbackTail(fallback)
    sources = q.journal_readers(journal_dir)
    seen: dict[tuple[str, str, int], None] = {}

    def first_time(rec: Fields) -> bool:
        key = record_key(rec)
        if key is None:
            return True
        if key in seen:
            return False
        seen[key] = None
        if len(seen) > _FOLLOW_SEEN:
            del seen[next(iter(seen))]
        return True

    while True:
        for reader in sources:
            for entry in reader:
                rec = from_journal(entry)
                if q.matches(rec) and first_time(rec):
                    yield rec
        for rec in tail.read():
            if q.matches(rec) and first_time(rec):
                yield rec
        sources[0].wait(0.5 / len(sources))
        for reader in sources[1:]:
            reader.wait(0)


# --- formatting -----------------------------------------------------------------------------


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def as_text(rec: Fields) -> str:
    """One human line: time, priority, chain position, kind, message."""
    prio = _int(rec.get("priority"), 6)
    name = _PRIORITY_NAMES[prio] if 0 <= prio < len(_PRIORITY_NAMES) else str(prio)
    return (
        f"{_when(float(rec.get('ts') or 0.0))} {name:<7} #{rec.get('seq', '-')} "
        f"{rec.get('kind', '-')}: {rec.get('message', '')}"
    )


def _cef_header(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _cef_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


# Record field -> CEF extension key (custom strings carry their label).
_CEF_KEYS: tuple[tuple[str, str, str | None], ...] = (
    ("workload", "suser", None),
    ("uid", "suid", None),
    ("pid", "spid", None),
    ("intent_id", "externalId", None),
    ("outcome", "outcome", None),
    ("approver", "duser", None),
    ("rule", "cs1", "rule"),
    ("target", "cs2", "target"),
    ("params", "cs3", "params"),
    ("chain", "cs4", "chain"),
    ("hash", "cs5", "hash"),
    ("detail", "cs6", "detail"),
    ("seq", "cn1", "seq"),
)


def as_cef(rec: Fields) -> str:
    """One ArcSight CEF:0 line; severity from PRIORITY, signature `kind/outcome`."""
    kind = str(rec.get("kind", "audit"))
    outcome = rec.get("outcome") or rec.get("decision")
    signature = f"{kind}/{outcome}" if outcome else kind
    message = str(rec.get("message", ""))
    severity = CEF_SEVERITY.get(_int(rec.get("priority"), 6), 1)
    ext = [f"rt={int(float(rec.get('ts') or 0.0) * 1000)}", f"cat={_cef_value(kind)}"]
    if rec.get("action"):
        ext.append(f"act={_cef_value(str(rec['action']))}")
    for field, key, label in _CEF_KEYS:
        value = rec.get(field)
        if value is None or value == "":
            continue
        ext.append(f"{key}={_cef_value(str(value))}")
        if label is not None:
            ext.append(f"{key}Label={label}")
    ext.append(f"msg={_cef_value(message)}")
    fields = ("clawvisor", "clawvisor", daemon_version(), signature, message[:512])
    header = "|".join(_cef_header(h) for h in fields)
    return f"CEF:0|{header}|{severity}|{' '.join(ext)}"


def as_json(rec: Fields) -> str:
    return msgspec.json.encode(rec).decode()


FORMATTERS: dict[str, Callable[[Fields], str]] = {"text": as_text, "json": as_json, "cef": as_cef}


def show(
    fallback: Path,
    *,
    fmt: Format,
    workload: str | None,
    since: str | None,
    follow_new: bool,
    journal_dir: Path | None = None,
    chain: str | None = None,
    intent: str | None = None,
    kinds: Sequence[str] = (),
    host: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """`clawvisor audit log`."""
    try:
        after = parse_since(since) if since is not None else None
    except SinceError as exc:
        print(f"clawvisor audit log: {exc}", file=sys.stderr)
        return 2
    q = Query(
        workload=workload, since=after, chain=chain, intent=intent, kinds=tuple(kinds), host=host
    )
    line = FORMATTERS[fmt]
    try:
        if not follow_new:
            for rec in records(fallback, query=q, journal_dir=journal_dir):
                print(line(rec), file=out)
            out.flush()
            return 0
        for rec in follow(fallback, query=q, journal_dir=journal_dir):
            print(line(rec), file=out, flush=True)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    return 0
