"""A record's journald bytes are defined once: every field set, in declaration order.

The fast encoder (cached runs of repeating fields) must give exactly the bytes of the
plain definition, for every combination of fields, or records written by an earlier
build would stop verifying.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.audit.journal import field_bytes
from supervisor.audit.record import _HASH_KEY, MESSAGE_IDS, AuditRecord, record_bytes, seal

TEXT = st.text(max_size=40) | st.just("multi\nline") | st.just("{}")
MAYBE_TEXT = st.none() | TEXT
MAYBE_INT = st.none() | st.integers(-(2**31), 2**31)


def plain(rec: AuditRecord) -> bytes:
    """The definition, written the slow way."""
    out = [
        f"MESSAGE_ID={MESSAGE_IDS[rec.kind]}\n".encode(),
        b"SYSLOG_IDENTIFIER=clawvisor\n",
        f"CLAWVISOR_KIND={rec.kind}\n".encode(),
        f"PRIORITY={rec.priority}\n".encode(),
        field_bytes(b"MESSAGE", rec.message),
    ]
    for name in AuditRecord.__struct_fields__:
        if name in ("kind", "priority", "message", "hash"):
            continue
        value = getattr(rec, name)
        if value is not None:
            out.append(field_bytes(b"CLAWVISOR_" + name.upper().encode(), str(value)))
    return b"".join(out)


records = st.builds(
    AuditRecord,
    kind=st.sampled_from(sorted(MESSAGE_IDS)),
    priority=st.integers(0, 7),
    message=TEXT,
    intent_id=MAYBE_TEXT,
    workload=MAYBE_TEXT,
    uid=MAYBE_INT,
    pid=MAYBE_INT,
    action=MAYBE_TEXT,
    target=MAYBE_TEXT,
    runs_on=MAYBE_TEXT,
    decision=MAYBE_TEXT,
    rule=MAYBE_TEXT,
    params=MAYBE_TEXT,
    outcome=MAYBE_TEXT,
    approver=MAYBE_TEXT,
    pending=MAYBE_TEXT,
    detail=MAYBE_TEXT,
    final=st.none() | st.just(1),
    chain=MAYBE_TEXT,
    segment=MAYBE_TEXT,
    seq=st.integers(0, 2**40),
    prev=MAYBE_TEXT,
    ts=st.none() | st.floats(0, 2e9),
)


@settings(max_examples=400)
@given(records)
def test_the_fast_encoder_gives_the_bytes_of_the_definition(rec):
    assert record_bytes(rec) == plain(rec)


@settings(max_examples=200)
@given(st.lists(records, min_size=2, max_size=8))
def test_the_cache_never_changes_a_records_bytes(recs):
    cache: dict = {}
    for rec in recs:
        assert record_bytes(rec, cache) == plain(rec)
        assert record_bytes(rec, cache) == plain(rec)  # a second time, from the cache


def test_the_hash_is_over_exactly_those_bytes_and_sent_last():
    rec = AuditRecord(kind="decision", priority=6, message="m", workload="w", seq=1)
    digest, payload = seal(record_bytes(rec))
    assert payload == plain(rec) + field_bytes(_HASH_KEY, digest)
