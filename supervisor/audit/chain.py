"""The audit hash chain: every record carries the hash of the one before it.

A record's hash is SHA-256 over its own journald bytes (supervisor/audit/record.py),
which include `prev`, the previous record's hash. Editing, removing or reordering a
record therefore breaks every link after it. The chain has an id and
continues across restarts and upgrades: its head (id, seq, hash) is kept in the state
directory, and on start the newest record of the chain in journald or the fallback file
wins over a head that a crash left behind.

Each run writes a segment of its own (`segment`, a new id at every start): its first
record continues from the newest record the run could see, so a daemon killed while
journald still held records of it in its queue (they arrive later) is seen as what it
was, a restart, and not as two records claiming one place: the late records are the
old segment's own, and are checked as such.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Final

import msgspec

from .journal import readers
from .record import record_digest

GENESIS = "0" * 64
HEAD_FILE = "audit-chain.json"


class Head(msgspec.Struct):
    """Where the chain stands: its id, the last seq written, that record's hash, and the
    segment (the daemon's run) that wrote it."""

    chain: str
    seq: int = 0
    hash: str = GENESIS
    segment: str | None = None


def _digest(fields: Mapping[str, object]) -> str | None:
    try:
        return record_digest(fields)
    except (msgspec.ValidationError, KeyError):
        return None  # not even a record: it cannot match


def new_head() -> Head:
    return Head(chain=secrets.token_hex(8))


def load_head(path: Path) -> Head | None:
    """The saved head, or None when there is none (or it is unreadable: a new chain)."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=Head)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def save_head(path: Path, head: Head) -> None:
    """Write the head atomically (temp file, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, msgspec.json.encode(head))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# --- reading the chain back -----------------------------------------------------------------


def journal_entries(chain: str, directory: Path | None = None) -> Iterator[dict[str, object]]:
    """This chain's records in journald (or the journal files in `directory`)."""
    try:
        found = readers(directory)
    except (ImportError, OSError):
        return
    for reader in found:
        try:
            reader.add_match(SYSLOG_IDENTIFIER="clawvisor", CLAWVISOR_CHAIN=chain)
            for entry in reader:
                yield journal_fields(entry)
        finally:
            reader.close()


def newest_in_journal(chain: str) -> dict[str, object] | None:
    """This chain's newest record in journald (by seq), without reading the rest."""
    try:
        found = readers()
    except (ImportError, OSError):
        return None
    newest: dict[str, object] | None = None
    for reader in found:
        try:
            reader.add_match(SYSLOG_IDENTIFIER="clawvisor", CLAWVISOR_CHAIN=chain)
            reader.seek_tail()
            entry = reader.get_previous()
            if entry:
                fields = journal_fields(entry)
                if newest is None or int(str(fields.get("seq"))) > int(str(newest.get("seq"))):
                    newest = fields
        except (OSError, ValueError):
            continue
        finally:
            reader.close()
    return newest


def journal_fields(entry: Mapping[str, object]) -> dict[str, object]:
    """A journald entry's CLAWVISOR_* fields (lower-case, unprefixed), PRIORITY, MESSAGE."""
    fields: dict[str, object] = {
        k[len("CLAWVISOR_") :].lower(): v for k, v in entry.items() if k.startswith("CLAWVISOR_")
    }
    fields["priority"] = entry.get("PRIORITY")
    fields["message"] = entry.get("MESSAGE")
    return fields


def fallback_entries(
    path: Path, chain: str, tail: int | None = None
) -> Iterator[dict[str, object]]:
    """This chain's records in the JSONL fallback file; only its last `tail` bytes if given."""
    try:
        with path.open("rb") as f:
            if tail is not None:
                with contextlib.suppress(OSError):
                    f.seek(-tail, os.SEEK_END)
                f.readline()  # a partial first line
            data = f.read()
    except FileNotFoundError:
        return
    for line in data.splitlines():
        try:
            rec = msgspec.json.decode(line)["record"]
        except (msgspec.DecodeError, KeyError, TypeError):
            continue
        if isinstance(rec, dict) and rec.get("chain") == chain:
            yield rec


def ended(
    chain: str, wanted: Iterable[tuple[str, str, float]], fallback: Path
) -> set[tuple[str, str]]:
    """Of the (workload, intent id, since) asked about, those whose intent already has a
    final record in this chain (journald or the fallback file), written at or after
    `since`: a restart must not give them a second outcome."""
    since = {(w, i): t for w, i, t in wanted}
    if not since:
        return set()
    found: set[tuple[str, str]] = set()

    def take(rec: Mapping[str, object]) -> None:
        key = (str(rec.get("workload")), str(rec.get("intent_id")))
        if key in since and str(rec.get("final")) == "1":
            try:
                ts = float(str(rec.get("ts")))
            except ValueError:
                ts = float("inf")
            if ts >= since[key]:
                found.add(key)

    for rec in fallback_entries(fallback, chain):
        take(rec)
    try:
        sources = readers()
    except (ImportError, OSError):
        return found
    for reader in sources:
        try:
            reader.add_match(
                SYSLOG_IDENTIFIER="clawvisor", CLAWVISOR_CHAIN=chain, CLAWVISOR_FINAL="1"
            )
            reader.seek_realtime(min(since.values()) - 60)  # journald's clock, a margin
            for entry in reader:
                take(journal_fields(entry))
        except OSError:
            pass
        finally:
            reader.close()
    return found


def recover(head: Head, fallback: Path) -> Head:
    """The head, moved forward to the newest record this chain has in either sink."""
    best = head
    candidates = [newest_in_journal(head.chain)]
    candidates += list(fallback_entries(fallback, head.chain, tail=1 << 16))[-1:]
    for rec in candidates:
        if rec is None:
            continue
        try:
            seq = int(str(rec.get("seq")))
        except ValueError:
            continue
        if seq > best.seq and isinstance(rec.get("hash"), str):
            best = Head(chain=head.chain, seq=seq, hash=str(rec["hash"]))
    return best


class ChainReport(msgspec.Struct):
    """What `clawvisor audit verify` found."""

    chain: str
    records: int
    first: int
    last: int
    problems: list[str]
    notes: list[str]
    #: The seq of the first record that is altered, missing or out of chain.
    first_break: int | None = None
    #: How many runs (segments) of the daemon wrote these records.
    runs: int = 1


def verify(chain: str, records: Iterable[Mapping[str, object]], head: Head | None) -> ChainReport:
    """Check every link of the chain, segment by segment: hashes recompute, seqs run on,
    each `prev` is the hash before it; each segment starts at genesis or at a record of
    the chain (a restart), and a record missing from that place is a break."""
    segments: dict[str, dict[int, Mapping[str, object]]] = {}
    problems: list[str] = []
    for rec in records:
        try:
            seq = int(str(rec.get("seq")))
        except ValueError:
            problems.append(f"a record without a usable seq: {rec.get('message')!r}")
            continue
        mine = segments.setdefault(str(rec.get("segment") or ""), {})
        if seq in mine and mine[seq].get("hash") != rec.get("hash"):
            problems.append(f"seq {seq}: two different records")
        mine[seq] = rec
    notes: list[str] = []
    if not segments:
        return ChainReport(chain, 0, 0, 0, problems or ["no records of this chain"], notes)
    hashes = {
        (seq, str(rec.get("hash"))) for mine in segments.values() for seq, rec in mine.items()
    }
    everything = sorted({seq for mine in segments.values() for seq in mine})
    oldest, newest = everything[0], everything[-1]
    if oldest != 1:
        notes.append(
            f"the chain starts at seq {oldest} here: records 1..{oldest - 1} are no longer "
            "in the journal (rotated or vacuumed) or were removed"
        )
    breaks: list[int] = []
    starts: list[tuple[int, str]] = []
    for name, mine in segments.items():
        seqs = sorted(mine)
        first = seqs[0]
        starts.append((first, name))
        prev_seq: int | None = None
        for seq in seqs:
            rec = mine[seq]
            if _digest(rec) != rec.get("hash"):
                problems.append(f"seq {seq}: the record does not match its hash (altered)")
                breaks.append(seq)
            if prev_seq is not None:
                if seq != prev_seq + 1:
                    problems.append(f"seq {prev_seq + 1}..{seq - 1}: missing")
                    breaks.append(prev_seq + 1)
                elif rec.get("prev") != mine[prev_seq].get("hash"):
                    problems.append(f"seq {seq}: does not follow seq {prev_seq} (chain broken)")
                    breaks.append(seq)
            prev_seq = seq
        link = mine[first].get("prev")
        if first == 1:
            if link != GENESIS:
                problems.append("seq 1: does not start from the genesis hash")
                breaks.append(1)
        elif (first - 1, str(link)) not in hashes and first > oldest:
            problems.append(
                f"seq {first}: starts a run that continues from a seq {first - 1} that is "
                "not in the chain (removed or altered)"
            )
            breaks.append(first)
    starts.sort()
    for (_, a_name), (b_first, _) in itertools.pairwise(starts):
        late = [seq for seq in segments[a_name] if seq >= b_first]
        if late:
            notes.append(
                f"records {late[0]}..{late[-1]} of a run were written after the next run had "
                f"started from seq {b_first - 1} (it was stopped while journald still held "
                "them): a restart, not a fork"
            )
    if head is not None and head.chain == chain and head.seq > newest:
        problems.append(
            f"the state directory's head is at seq {head.seq}, the newest record found is "
            f"{newest}: records at the end are missing"
        )
        breaks.append(newest + 1)
    first_break = min(breaks) if breaks else None
    count = sum(len(m) for m in segments.values())
    report = ChainReport(chain, count, oldest, newest, problems, notes, first_break)
    report.runs = len(segments)
    return report


#: `clawvisor audit verify`'s exit statuses.
INTACT: Final = 0
BROKEN: Final = 1
ERROR: Final = 2
INTACT_FROM: Final = 3


class ChainStatus(ChainReport, kw_only=True):
    """What `clawvisor audit verify --json` prints: the report, its state in words, and
    the exit status it gives."""

    state: str
    exit: int


def report(
    state_dir: Path,
    fallback: Path,
    chain: str | None,
    *,
    as_json: bool,
    journal_dir: Path | None = None,
) -> int:
    """`clawvisor audit verify`: check the chain in journald and the fallback file.

    Exit 0: intact from its first record; 3: intact from seq N, the records before it
    rotated out of the journal; 1: broken (altered, missing or out of place); 2: nothing
    to check (no chain head, no records)."""
    head = load_head(state_dir / HEAD_FILE)
    if chain is None:
        if head is None:
            print(f"clawvisor audit verify: no chain head in {state_dir}; give --chain ID")
            return ERROR
        chain = head.chain
    records = [*journal_entries(chain, journal_dir), *fallback_entries(fallback, chain)]
    checked = verify(chain, records, head)
    if checked.problems:
        state, code = f"BROKEN at seq {checked.first_break}", BROKEN
    elif checked.records == 0:
        state, code = "no records", ERROR
    elif checked.first != 1:
        since = _oldest_time(records, checked.first)
        state = f"intact from seq {checked.first}: earlier records rotated out" + (
            f" before {since}" if since else ""
        )
        code = INTACT_FROM
    else:
        state, code = "intact", INTACT
    if as_json:
        fields = msgspec.structs.asdict(checked)
        print(msgspec.json.encode(ChainStatus(**fields, state=state, exit=code)).decode())
        return code
    where = f"journal files in {journal_dir}" if journal_dir else "the journal"
    print(
        f"chain {checked.chain} (head in {state_dir}; read from {where} and {fallback}): "
        f"{checked.records} records, seq {checked.first}..{checked.last}, "
        f"{checked.runs} run(s): {state}"
    )
    if checked.first_break is not None:
        print(f"  first break: seq {checked.first_break}")
    for note in checked.notes:
        print(f"  note: {note}")
    for problem in checked.problems:
        print(f"  {problem}")
    return code


def _oldest_time(records: Iterable[Mapping[str, object]], seq: int) -> str | None:
    import datetime as dt

    for rec in records:
        if str(rec.get("seq")) == str(seq):
            try:
                when = float(str(rec.get("ts")))
            except ValueError:
                return None
            return dt.datetime.fromtimestamp(when).isoformat(timespec="seconds")
    return None
