"""`clawvisor audit log`: reading the trail back and showing it as text, JSON and CEF."""

import io
import json

import pytest

from supervisor.audit import Auditor, AuditRecord
from supervisor.audit.journal import JournalSender
from supervisor.audit.log import (
    FallbackTail,
    SinceError,
    as_cef,
    as_text,
    parse_since,
    records,
    show,
)


def rec(**over):
    base = {
        "kind": "decision",
        "priority": 5,
        "message": "w1 open-url -> w1: deny (policy_denied) [rule a.toml:3, id r1]",
        "workload": "w1",
        "uid": 1001,
        "pid": 42,
        "action": "open-url",
        "outcome": "policy_denied",
        "rule": "a.toml:3",
        "intent_id": "r1",
        "seq": 7,
        "chain": "c0ffee",
        "ts": 1_700_000_000.25,
    }
    return {**base, **over}


def cef_extension(line: str) -> str:
    # The header has 7 unescaped pipes (escaped ones are preceded by a backslash).
    count, i = 0, 0
    while count < 7:
        if line[i] == "|" and line[i - 1] != "\\":
            count += 1
        i += 1
    return line[i:]


def test_cef_has_the_header_fields_and_the_severity_of_the_priority():
    line = as_cef(rec())
    assert line.startswith("CEF:0|clawvisor|clawvisor|")
    parts = line.split("|")
    assert parts[4] == "decision/policy_denied"
    assert parts[6] == "3"  # notice
    assert as_cef(rec(priority=2)).split("|")[6] == "9"  # crit
    assert as_cef(rec(priority=6)).split("|")[6] == "1"  # info


def test_cef_extension_carries_the_record_fields():
    ext = cef_extension(as_cef(rec()))
    for pair in (
        "rt=1700000000250",
        "suser=w1",
        "suid=1001",
        "spid=42",
        "act=open-url",
        "externalId=r1",
        "cs1=a.toml:3 cs1Label=rule",
        "cn1=7 cn1Label=seq",
    ):
        assert pair in ext


def test_cef_escapes_pipes_in_the_header_and_equals_and_newlines_in_values():
    line = as_cef(rec(message="a|b=c\nd\\e"))
    assert "|a\\|b=c d\\\\e|" in line  # header: pipe and backslash escaped, no newline
    assert "msg=a|b\\=c\\nd\\\\e" in line
    assert "\n" not in line


def test_text_lines_show_time_priority_seq_and_message():
    line = as_text(rec())
    assert line.startswith("2023-11-14T22:13:20.250+00:00 notice  #7 decision: w1 open-url")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30m", 1000.0 - 1800), ("2h", 1000.0 - 7200), ("1d ago", 1000.0 - 86400), ("5", 5.0)],
)
def test_since_accepts_ages_and_unix_time(text, expected):
    assert parse_since(text, now=1000.0) == expected


def test_since_accepts_iso_8601_with_a_zone():
    assert parse_since("2023-11-14T22:13:20+00:00") == 1_700_000_000.0


def test_since_refuses_what_is_not_a_time():
    with pytest.raises(SinceError):
        parse_since("last tuesday")


def test_the_fallback_tail_returns_only_complete_new_lines(tmp_path):
    path = tmp_path / "audit.jsonl"
    line = json.dumps({"message_id": "x", "record": rec()})
    path.write_text(line + "\n" + line[:20])
    tail = FallbackTail(path)
    assert len(tail.read()) == 1
    with path.open("a") as f:
        f.write(line[20:] + "\n")
    assert [r["seq"] for r in tail.read()] == [7]
    assert tail.read() == []


def test_records_filter_by_workload_and_time(tmp_path):
    a = Auditor(tmp_path, sender=JournalSender(str(tmp_path / "none")), warn=io.StringIO())
    for n, (w, ts) in enumerate([("w1", 100.0), ("w2", 200.0), ("w1", 300.0)]):
        a.write(AuditRecord(kind="decision", priority=6, message=f"m{n}", workload=w, ts=ts))
    a.close()
    path = tmp_path / "audit.jsonl"
    got = list(records(path, workload="w1", since=150.0, journal=False))
    assert [r["message"] for r in got] == ["m2"]


def test_show_prints_one_cef_line_per_record(tmp_path, monkeypatch):
    a = Auditor(tmp_path, sender=JournalSender(str(tmp_path / "none")), warn=io.StringIO())
    for n in range(3):
        a.write(AuditRecord(kind="decision", priority=6, message=f"m{n}", workload="w9"))
    a.close()
    monkeypatch.setattr("supervisor.audit.log.readers", _no_journal)
    out = io.StringIO()
    assert (
        show(
            tmp_path / "audit.jsonl",
            fmt="cef",
            workload="w9",
            since=None,
            follow_new=False,
            out=out,
        )
        == 0
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all(x.startswith("CEF:0|clawvisor|") for x in lines)


def _no_journal(*_args):
    raise OSError("no journal in this test")
