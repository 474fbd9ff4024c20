"""Auditor: journald first, JSONL fallback second, a loud error when both fail."""

import io
import json
import os

import pytest

from supervisor.audit import Auditor, AuditRecord, AuditUnavailable
from supervisor.audit.journal import JournalSender


def record(n: int = 0) -> AuditRecord:
    return AuditRecord(kind="decision", priority=6, message=f"m{n}", intent_id=f"i{n}")


def test_records_go_to_the_fallback_when_journald_is_absent(tmp_path):
    warn = io.StringIO()
    a = Auditor(tmp_path, sender=JournalSender(str(tmp_path / "no-journal")), warn=warn)
    for n in range(5):
        a.write(record(n))
    a.close()
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert [json.loads(x)["record"]["intent_id"] for x in lines] == [f"i{n}" for n in range(5)]
    assert "journald unreachable" in warn.getvalue()
    assert oct((tmp_path / "audit.jsonl").stat().st_mode & 0o777) == "0o600"


def test_records_are_numbered_in_order(tmp_path):
    a = Auditor(tmp_path, sender=JournalSender(str(tmp_path / "none")), warn=io.StringIO())
    recs = [record(n) for n in range(3)]
    for r in recs:
        a.write(r)
    assert [r.seq for r in recs] == [1, 2, 3]


def test_both_sinks_failing_raises(tmp_path):
    blocked = tmp_path / "log"
    blocked.write_text("a file where the log directory should be")
    a = Auditor(blocked, sender=JournalSender(str(tmp_path / "none")), warn=io.StringIO())
    with pytest.raises(AuditUnavailable):
        a.write(record())


def test_multi_line_values_use_the_binary_safe_encoding():
    from supervisor.audit.journal import encode_fields

    data = encode_fields([("A", "one"), ("B", "two\nlines")])
    assert data.startswith(b"A=one\nB\n")
    assert int.from_bytes(data[8:16], "little") == len("two\nlines")


def test_the_fallback_file_is_appended_not_truncated(tmp_path):
    (tmp_path / "audit.jsonl").write_text('{"old": 1}\n')
    os.chmod(tmp_path / "audit.jsonl", 0o600)
    a = Auditor(tmp_path, sender=JournalSender(str(tmp_path / "none")), warn=io.StringIO())
    a.write(record())
    assert (tmp_path / "audit.jsonl").read_text().startswith('{"old": 1}\n')


def _blocked(tmp_path, cap: int = 10) -> tuple[Auditor, object]:
    """An auditor whose sinks both fail until `unblock` runs."""
    log = tmp_path / "log"
    log.write_text("a file where the log directory should be")
    a = Auditor(
        log, sender=JournalSender(str(tmp_path / "none")), warn=io.StringIO(), backlog_cap=cap
    )
    return a, log.unlink


def test_a_deferred_record_waits_and_is_written_first_when_the_trail_is_back(tmp_path):
    a, unblock = _blocked(tmp_path)
    a.write(record(1), defer=True)
    a.write(record(2), defer=True)
    assert a.backlog == 2
    unblock()
    a.write(record(3))
    lines = [json.loads(x)["record"] for x in (tmp_path / "log" / "audit.jsonl").open()]
    assert [r["intent_id"] for r in lines] == ["i1", "i2", "i3"]
    assert [r["seq"] for r in lines] == [1, 2, 3]
    assert lines[1]["prev"] == lines[0]["hash"] and lines[2]["prev"] == lines[1]["hash"]
    assert a.backlog == 0


def test_a_deferred_record_keeps_the_time_it_happened(tmp_path):
    a, unblock = _blocked(tmp_path)
    rec = record(1)
    a.write(rec, defer=True)
    when = rec.ts
    unblock()
    a.flush()
    [line] = (tmp_path / "log" / "audit.jsonl").read_text().splitlines()
    assert json.loads(line)["record"]["ts"] == when


def test_a_record_that_may_not_wait_is_refused_while_others_wait(tmp_path):
    a, _ = _blocked(tmp_path)
    a.write(record(1), defer=True)
    with pytest.raises(AuditUnavailable):
        a.write(record(2))
    assert a.backlog == 1


def test_a_full_backlog_counts_what_it_loses_and_says_so_when_back(tmp_path):
    a, unblock = _blocked(tmp_path, cap=2)
    a.write(record(1), defer=True)
    a.write(record(2), defer=True)
    with pytest.raises(AuditUnavailable):
        a.write(record(3), defer=True)
    assert a.lost == 1
    unblock()
    a.flush()
    lines = [json.loads(x)["record"] for x in (tmp_path / "log" / "audit.jsonl").open()]
    assert [r.get("intent_id") for r in lines] == ["i1", "i2", None]
    assert lines[2]["priority"] == 2 and "1 audit records were lost" in lines[2]["message"]
    assert a.lost == 0
