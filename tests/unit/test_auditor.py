"""Auditor: journald first, JSONL fallback second, a loud error when both fail."""

import io
import json
import os

import pytest

from supervisor.audit import Auditor, AuditRecord, AuditUnavailable
from supervisor.journal import JournalSender


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
    from supervisor.journal import encode_fields

    data = encode_fields([("A", "one"), ("B", "two\nlines")])
    assert data.startswith(b"A=one\nB\n")
    assert int.from_bytes(data[8:16], "little") == len("two\nlines")


def test_the_fallback_file_is_appended_not_truncated(tmp_path):
    (tmp_path / "audit.jsonl").write_text('{"old": 1}\n')
    os.chmod(tmp_path / "audit.jsonl", 0o600)
    a = Auditor(tmp_path, sender=JournalSender(str(tmp_path / "none")), warn=io.StringIO())
    a.write(record())
    assert (tmp_path / "audit.jsonl").read_text().startswith('{"old": 1}\n')
