"""An audit record, its journald bytes, and its hash: the one definition the trail is
written with (supervisor/audit/trail.py) and checked against (supervisor/audit/chain.py).

A record's journald payload is a fixed sequence of fields (MESSAGE_ID,
SYSLOG_IDENTIFIER, CLAWVISOR_KIND, PRIORITY, MESSAGE, then each CLAWVISOR_* field that
is set, in declaration order, CLAWVISOR_TS last); its hash is SHA-256 over exactly those
bytes, which include CLAWVISOR_PREV, and is sent as the last field, CLAWVISOR_HASH.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final, Literal

import msgspec

from .journal import field_bytes

Kind = Literal["decision", "result", "rejected", "policy", "daemon", "audit", "approval", "alert"]

#: One MESSAGE_ID per kind of record; never change one once released.
MESSAGE_IDS: Final[dict[str, str]] = {
    "decision": "8d84773198a141a9bc27ab30805207fd",
    "result": "0e36f5a3f35a4904b10e9b7b06176831",
    "rejected": "62426a21e13e48c2a1ac686dd5039760",
    "policy": "ce208390551c48af8129f26783fd7b6a",
    "daemon": "9f70dbaea324429794bc6d42cdd8c406",
    "audit": "feac2aee63a24ab1819a3a6e8f300aa3",
    "approval": "23b1feb7d9dc4c3dbfbb763e197b0dca",
    "alert": "68dfb4a068674d4fbd0e8b454b972652",
}

# syslog priorities
CRIT, ERR, WARNING, NOTICE, INFO = 2, 3, 4, 5, 6


class AuditRecord(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One audit record. Field names map to CLAWVISOR_<NAME> journald fields."""

    kind: Kind
    priority: int
    message: str
    intent_id: str | None = None
    workload: str | None = None
    uid: int | None = None
    pid: int | None = None
    action: str | None = None
    #: The target the intent named (None: it named none) ...
    target: str | None = None
    #: ... and the workload it ran on (or would have), when that differs.
    runs_on: str | None = None
    decision: str | None = None
    rule: str | None = None
    params: str | None = None
    outcome: str | None = None
    approver: str | None = None
    pending: str | None = None
    detail: str | None = None
    #: 1 on the one record that ends an accepted intent: its outcome.
    final: int | None = None
    #: The hash chain (supervisor/audit/chain.py): its id, this record's place in it,
    #: the previous record's hash and this one's.
    chain: str | None = None
    #: Each run of the daemon writes a segment of its own: a crash that leaves records in
    #: flight is a restart, never two records claiming one place (see chain.py).
    segment: str | None = None
    seq: int = 0
    prev: str | None = None
    #: When it happened (Unix time): a record deferred by an outage keeps its own time.
    ts: float | None = None
    hash: str | None = None


# Precomputed journald bytes: the hot path only joins them with the record's values.
_FIELDS: Final = AuditRecord.__struct_fields__
_HASH_KEY: Final = b"CLAWVISOR_HASH"
_PREFIX: Final = {
    kind: b"MESSAGE_ID=%s\nSYSLOG_IDENTIFIER=clawvisor\nCLAWVISOR_KIND=%s\n"
    % (mid.encode(), kind.encode())
    for kind, mid in MESSAGE_IDS.items()
}
_PRIORITY: Final = {p: b"PRIORITY=%d\n" % p for p in range(8)}


def _key(name: str) -> bytes:
    return b"CLAWVISOR_" + name.upper().encode()


def _at(name: str) -> int:
    return _FIELDS.index(name)


# The CLAWVISOR_* fields in declaration order, cut into runs: values that repeat from
# record to record (one connection, one rule: workload..rule, outcome..pending,
# final..chain) are encoded once per distinct run and cached, bounded; values that
# differ every time or can be long (intent_id, params, detail, seq, prev, ts) are
# encoded each time. A field not set (None) is left out.
_I_INTENT, _I_PARAMS, _I_DETAIL = _at("intent_id"), _at("params"), _at("detail")
_I_SEQ, _I_PREV, _I_TS = _at("seq"), _at("prev"), _at("ts")
_RUN_A: Final = (_at("workload"), _I_PARAMS)
_RUN_B: Final = (_at("outcome"), _I_DETAIL)
_RUN_C: Final = (_at("final"), _I_SEQ)
# The layout these runs assume: intent_id right before workload; ts, then hash, last.
assert _FIELDS[_I_INTENT + 1] == "workload"
assert len(_FIELDS) == _I_TS + 2
_RUN_KEYS: Final = {
    run: tuple(_key(f) for f in _FIELDS[run[0] : run[1]]) for run in (_RUN_A, _RUN_B, _RUN_C)
}
_K_INTENT, _K_PARAMS, _K_DETAIL, _K_PREV = (
    _key(f) for f in ("intent_id", "params", "detail", "prev")
)
_CACHE_MAX: Final = 4096


def _run(values: tuple[Any, ...], run: tuple[int, int], cache: dict[Any, bytes] | None) -> bytes:
    part = values[run[0] : run[1]]
    key = (run, part)  # runs of one length would otherwise share entries
    encoded = cache.get(key) if cache is not None else None
    if encoded is None:
        encoded = b"".join(
            field_bytes(k, v if type(v) is str else str(v))
            for k, v in zip(_RUN_KEYS[run], part, strict=True)
            if v is not None
        )
        if cache is not None:
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[key] = encoded
    return encoded


def record_bytes(rec: AuditRecord, cache: dict[Any, bytes] | None = None) -> bytes:
    """The record's journald payload without its hash; `cache` keeps repeating runs."""
    v = msgspec.structs.astuple(rec)
    parts = [_PREFIX[rec.kind], _PRIORITY[rec.priority], field_bytes(b"MESSAGE", rec.message)]
    if v[_I_INTENT] is not None:
        parts.append(field_bytes(_K_INTENT, v[_I_INTENT]))
    parts.append(_run(v, _RUN_A, cache))
    if v[_I_PARAMS] is not None:
        parts.append(field_bytes(_K_PARAMS, v[_I_PARAMS]))
    parts.append(_run(v, _RUN_B, cache))
    if v[_I_DETAIL] is not None:
        parts.append(field_bytes(_K_DETAIL, v[_I_DETAIL]))
    parts.append(_run(v, _RUN_C, cache))
    parts.append(b"CLAWVISOR_SEQ=%d\n" % v[_I_SEQ])  # an int: never a newline in it
    if v[_I_PREV] is not None:
        parts.append(field_bytes(_K_PREV, v[_I_PREV]))
    if v[_I_TS] is not None:
        parts.append(b"CLAWVISOR_TS=%s\n" % str(v[_I_TS]).encode())
    return b"".join(parts)


def seal(body: bytes) -> tuple[str, bytes]:
    """The hash of a record's bytes, and the bytes with the hash field appended."""
    digest = hashlib.sha256(body).hexdigest()
    return digest, body + field_bytes(_HASH_KEY, digest)


def record_digest(fields: Mapping[str, Any]) -> str:
    """The hash a record read back (journald fields or a fallback line) should carry."""
    rec = msgspec.convert(dict(fields), AuditRecord, strict=False)
    return hashlib.sha256(record_bytes(rec)).hexdigest()
