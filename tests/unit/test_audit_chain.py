"""The audit hash chain: written by the Auditor, checked by verify, continued across restarts."""

import io
import json
from pathlib import Path

import pytest

from supervisor.audit import Auditor, AuditRecord, AuditUnavailable
from supervisor.audit.chain import GENESIS, fallback_entries, load_head, verify
from supervisor.audit.journal import JournalSender


def auditor(tmp_path: Path, *, log: Path | None = None) -> Auditor:
    # No journald socket at this path: every record goes to the fallback file.
    return Auditor(
        log or tmp_path,
        sender=JournalSender(str(tmp_path / "no-journal")),
        warn=io.StringIO(),
        head_path=tmp_path / "head.json",
    )


def write(a: Auditor, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        a.write(
            AuditRecord(kind="decision", priority=6, message=f"m{i}", intent_id=f"i{i}", uid=1000)
        )


def check(tmp_path: Path, chain: str):
    records = list(fallback_entries(tmp_path / "audit.jsonl", chain))
    return verify(chain, records, load_head(tmp_path / "head.json"))


def rewrite(path: Path, edit) -> None:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines = edit(lines)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_records_written_are_an_intact_chain_from_genesis(tmp_path):
    a = auditor(tmp_path)
    write(a, 10)
    a.close()
    v = check(tmp_path, a.chain)
    assert (v.records, v.first, v.last, v.problems) == (10, 1, 10, [])
    first = next(fallback_entries(tmp_path / "audit.jsonl", a.chain))
    assert first["prev"] == GENESIS


def test_an_altered_record_is_found(tmp_path):
    a = auditor(tmp_path)
    write(a, 5)
    a.close()

    def edit(lines):
        lines[2]["record"]["message"] = "nothing to see"
        return lines

    rewrite(tmp_path / "audit.jsonl", edit)
    assert check(tmp_path, a.chain).problems == [
        "seq 3: the record does not match its hash (altered)"
    ]


def test_a_removed_record_is_found(tmp_path):
    a = auditor(tmp_path)
    write(a, 5)
    a.close()
    rewrite(tmp_path / "audit.jsonl", lambda lines: lines[:2] + lines[3:])
    assert check(tmp_path, a.chain).problems == ["seq 3..3: missing"]


def test_a_record_rehashed_after_editing_breaks_the_next_link(tmp_path):
    from supervisor.audit.record import record_digest

    a = auditor(tmp_path)
    write(a, 5)
    a.close()

    def edit(lines):
        rec = lines[1]["record"]
        rec["message"] = "forged"
        rec["hash"] = record_digest(rec)
        return lines

    rewrite(tmp_path / "audit.jsonl", edit)
    assert check(tmp_path, a.chain).problems == ["seq 3: does not follow seq 2 (chain broken)"]


def test_truncating_the_end_is_found_against_the_saved_head(tmp_path):
    a = auditor(tmp_path)
    write(a, 5)
    a.close()
    rewrite(tmp_path / "audit.jsonl", lambda lines: lines[:3])
    [problem] = check(tmp_path, a.chain).problems
    assert "head is at seq 5" in problem


def test_a_restarted_auditor_continues_the_chain(tmp_path):
    a = auditor(tmp_path)
    write(a, 3)
    a.close()
    b = auditor(tmp_path)
    assert b.chain == a.chain
    write(b, 3, start=3)
    b.close()
    v = check(tmp_path, a.chain)
    assert (v.records, v.last, v.problems) == (6, 6, [])


def test_a_stale_head_after_a_crash_is_moved_to_the_newest_record(tmp_path):
    a = auditor(tmp_path)
    write(a, 3)
    a.save_head()
    write(a, 4, start=3)  # never saved: the process "crashed" here
    b = auditor(tmp_path)
    write(b, 1, start=7)
    b.close()
    v = check(tmp_path, a.chain)
    assert (v.records, v.last, v.problems) == (8, 8, [])


def test_a_record_no_sink_took_does_not_advance_the_chain(tmp_path):
    log = tmp_path / "log"
    log.write_text("a file where the log directory should be")
    a = auditor(tmp_path, log=log)
    with pytest.raises(AuditUnavailable):
        write(a, 1)
    log.unlink()  # the fallback works again
    write(a, 1, start=1)
    a.close()
    records = list(fallback_entries(log / "audit.jsonl", a.chain))
    assert [r["seq"] for r in records] == [1]
    assert verify(a.chain, records, load_head(tmp_path / "head.json")).problems == []


def test_verify_names_the_first_break(tmp_path):
    a = auditor(tmp_path)
    write(a, 8)
    a.close()

    def edit(lines):
        lines[5]["record"]["message"] = "later edit"
        return lines[:2] + lines[3:]

    rewrite(tmp_path / "audit.jsonl", edit)
    assert check(tmp_path, a.chain).first_break == 3


def test_an_intact_chain_has_no_first_break(tmp_path):
    a = auditor(tmp_path)
    write(a, 3)
    a.close()
    assert check(tmp_path, a.chain).first_break is None


# --- segments: a crash with records still in flight ---------------------------------------


def two_runs(tmp_path: Path, in_flight: int):
    """Run A writes 10 records, of which only the first 10 - in_flight are where the next
    start can see them (the rest are still in journald's queue: they arrive later); run
    B then starts from what it saw and writes 5. All of both reach the sink in the end."""
    from supervisor.audit.chain import Head, save_head

    a = auditor(tmp_path, log=tmp_path / "a")
    write(a, 10)
    records_a = list(fallback_entries(tmp_path / "a" / "audit.jsonl", a.chain))
    seen = records_a[: 10 - in_flight]
    last = seen[-1]
    save_head(tmp_path / "head.json", Head(chain=a.chain, seq=int(last["seq"]), hash=last["hash"]))
    b = auditor(tmp_path, log=tmp_path / "b")
    assert b.chain == a.chain and b.segment != a.segment
    write(b, 5, start=100)
    records_b = list(fallback_entries(tmp_path / "b" / "audit.jsonl", b.chain))
    return a.chain, records_a, records_b


def test_a_crash_with_records_in_flight_is_a_restart_not_a_fork(tmp_path):
    chain, records_a, records_b = two_runs(tmp_path, in_flight=4)
    assert int(records_b[0]["seq"]) == 7  # B went on from seq 6, all it could see
    checked = verify(chain, [*records_a, *records_b], None)
    assert checked.problems == [], checked.problems
    assert checked.runs == 2
    assert any("a restart, not a fork" in note for note in checked.notes)


def test_a_record_removed_from_the_later_run_is_still_found(tmp_path):
    chain, records_a, records_b = two_runs(tmp_path, in_flight=4)
    del records_b[2]
    checked = verify(chain, [*records_a, *records_b], None)
    assert checked.first_break == int(records_b[1]["seq"]) + 1


def test_a_run_that_continues_from_an_altered_record_is_found(tmp_path):
    chain, records_a, records_b = two_runs(tmp_path, in_flight=0)
    records_a[-1] = {**records_a[-1], "hash": "f" * 64}  # what B continued from, replaced
    checked = verify(chain, [*records_a, *records_b], None)
    assert checked.problems
    assert any("not in the chain" in p for p in checked.problems)
