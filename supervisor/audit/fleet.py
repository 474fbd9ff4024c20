"""`clawvisor audit verify --journal-dir DIR` on a collector: every chain of every VM.

A collector's journal files (systemd-journal-remote's, one per VM with `--split-mode=host`)
hold the records of many daemons; each record keeps the `_HOSTNAME` and `_MACHINE_ID`
journald gave it on its VM, so every chain stays attributable. Each (VM, chain) is
checked on its own, link by link (chain.verify); a VM is also reported with the time of
its newest record, and as stale when that is older than `stale` seconds (it stopped
shipping, or stopped recording).
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TextIO

import msgspec

from .chain import ChainReport, journal_fields, verify

INTACT, BROKEN, ERROR = 0, 1, 2


class ChainOfHost(msgspec.Struct, kw_only=True):
    """One VM's chain, as checked."""

    host: str
    machine: str
    chain: str
    state: str
    report: ChainReport
    newest: float


#: Records by (host, machine id, chain).
Groups = dict[tuple[str, str, str], list[dict[str, object]]]


def gather(entries: Iterable[Mapping[str, object]]) -> Groups:
    """The records of each (host, machine id, chain)."""
    out: Groups = {}
    for entry in entries:
        fields = journal_fields(entry)
        chain = fields.get("chain")
        if not chain:
            continue
        when = entry.get("__REALTIME_TIMESTAMP")
        if isinstance(when, dt.datetime):
            fields["received"] = when.timestamp()
        key = (str(entry.get("_HOSTNAME") or "?"), str(entry.get("_MACHINE_ID") or "?"), str(chain))
        out.setdefault(key, []).append(fields)
    return out


def check(groups: Groups) -> list[ChainOfHost]:
    """Each group's chain, checked, oldest host name first."""
    out = []
    for (host, machine, chain), records in sorted(groups.items()):
        rep = verify(chain, records, None)
        if rep.problems:
            state = f"broken at seq {rep.first_break}" if rep.first_break else "broken"
        elif rep.first != 1:
            state = f"rotated from seq {rep.first}"
        else:
            state = "intact"
        newest = max(float(str(r.get("received") or r.get("ts") or 0)) for r in records)
        out.append(ChainOfHost(host=host, machine=machine, chain=chain, state=state,
                               report=rep, newest=newest))  # fmt: skip
    return out


def _entries(directory: Path) -> Iterable[Mapping[str, object]]:
    from systemd import journal

    reader = journal.Reader(path=str(directory))
    try:
        reader.add_match(SYSLOG_IDENTIFIER="clawvisor")
        yield from reader
    finally:
        reader.close()


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def report(
    directory: Path, *, as_json: bool, stale: float = 3600.0, now: float | None = None,
    out: TextIO = sys.stdout,
) -> int:  # fmt: skip
    """Print one line per VM and chain, then each VM's newest record; exit 1 if any chain
    is broken, 2 if there is nothing to check."""
    try:
        chains = check(gather(_entries(directory)))
    except (ImportError, OSError) as exc:
        print(f"clawvisor audit verify: cannot read {directory}: {exc}", file=out)
        return ERROR
    if not chains:
        print(f"clawvisor audit verify: no clawvisor records in {directory}", file=out)
        return ERROR
    now = time.time() if now is None else now
    newest: dict[str, float] = {}
    for c in chains:
        newest[c.host] = max(newest.get(c.host, 0.0), c.newest)
    if as_json:
        for c in chains:
            print(msgspec.json.encode(c).decode(), file=out)
        for host, ts in sorted(newest.items()):
            line = {"host": host, "newest": ts, "stale": now - ts > stale}
            print(msgspec.json.encode(line).decode(), file=out)
    else:
        for c in chains:
            r = c.report
            print(f"{c.host} chain {c.chain}: {r.records} records, seq {r.first}..{r.last}, "
                  f"{r.runs} run(s): {c.state}", file=out)  # fmt: skip
        for host, ts in sorted(newest.items()):
            age = now - ts
            flag = f"  STALE: nothing for {age / 3600:.1f} h" if age > stale else ""
            print(f"{host}: newest record {_when(ts)}{flag}", file=out)
    return BROKEN if any(c.report.problems for c in chains) else INTACT
