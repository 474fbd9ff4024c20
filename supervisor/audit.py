"""The audit trail: every decision, result and refusal, to journald or, failing that, a file.

Records go to journald with SYSLOG_IDENTIFIER=clawvisor, a fixed MESSAGE_ID per kind
(catalogued in units/clawvisor.catalog), PRIORITY and CLAWVISOR_* fields. When journald
does not take a record, it goes to a JSONL file in the log directory and a warning says
so; when neither can take it, `AuditUnavailable` is raised and the caller must not act.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Final, Literal, TextIO

import msgspec

from .audit_chain import Head, digest, load_head, new_head, recover, save_head
from .journal import JournalSender, JournalUnavailable, field_bytes

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


class AuditUnavailable(Exception):
    """Neither journald nor the fallback file took the record."""


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
    target: str | None = None
    decision: str | None = None
    rule: str | None = None
    params: str | None = None
    outcome: str | None = None
    approver: str | None = None
    pending: str | None = None
    detail: str | None = None
    #: The hash chain (supervisor/audit_chain.py): its id, this record's place in it,
    #: the previous record's hash and this one's.
    chain: str | None = None
    seq: int = 0
    prev: str | None = None
    hash: str | None = None
    ts: float = 0.0


# Precomputed journald bytes: the hot path only joins them with the record's values.
_KEYS: Final = tuple(
    (f, b"CLAWVISOR_" + f.upper().encode())
    for f in AuditRecord.__struct_fields__
    if f not in ("kind", "priority", "message", "ts")
)
_PREFIX: Final = {
    kind: b"MESSAGE_ID=%s\nSYSLOG_IDENTIFIER=clawvisor\nCLAWVISOR_KIND=%s\n"
    % (mid.encode(), kind.encode())
    for kind, mid in MESSAGE_IDS.items()
}
_PRIORITY: Final = {p: b"PRIORITY=%d\n" % p for p in range(8)}
# Fields that repeat from record to record (one connection, one rule); their encoded
# bytes are cached, bounded.
_REPEATING: Final = frozenset(
    {
        "workload",
        "uid",
        "pid",
        "action",
        "target",
        "decision",
        "rule",
        "outcome",
        "approver",
        "chain",
    }
)
_CACHE_MAX: Final = 4096


class FallbackRecord(msgspec.Struct, kw_only=True):
    """A record as the JSONL fallback stores it: the record plus its MESSAGE_ID."""

    message_id: str
    record: AuditRecord


def bounded_json(value: object, cap: int) -> str:
    """JSON of `value`, cut to `cap` bytes with a marker when longer."""
    data = msgspec.json.encode(value)
    if len(data) <= cap:
        return data.decode("utf-8")
    return data[: cap - 16].decode("utf-8", "ignore") + "...(truncated)"


class Auditor:
    """Writes records in order, numbering them; journald first, the JSONL file second."""

    def __init__(
        self,
        log_dir: Path,
        *,
        fallback_name: str = "audit.jsonl",
        sender: JournalSender | None = None,
        warn: TextIO = sys.stderr,
        head_path: Path | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.fallback_path = log_dir / fallback_name
        self._sender = sender if sender is not None else JournalSender()
        self._warn = warn
        self._fd: int | None = None
        self._journal_ok = True
        self._head_path = head_path
        saved = load_head(head_path) if head_path is not None else None
        head = new_head() if saved is None else recover(saved, self.fallback_path)
        self.chain = head.chain
        self._seq, self._hash = head.seq, head.hash
        self._saved_seq = -1
        self.save_head()
        self._encoder = msgspec.json.Encoder()
        self._encoded: dict[tuple[bytes, object], bytes] = {}
        self.written_journal = 0
        self.written_fallback = 0

    @property
    def journal_ok(self) -> bool:
        """False while records are going to the fallback file."""
        return self._journal_ok

    def write(self, rec: AuditRecord) -> None:
        """Record `rec` durably or raise AuditUnavailable. Never drops it silently."""
        rec.chain, rec.seq, rec.prev = self.chain, self._seq + 1, self._hash
        rec.ts = time.time()
        rec.hash = digest(msgspec.structs.asdict(rec))
        try:
            self._sender.send(self._journal_payload(rec))
        except JournalUnavailable as exc:
            if self._journal_ok:
                self._journal_ok = False
                self._say(
                    f"journald unreachable ({exc.strerror}); audit records go to "
                    f"{self.fallback_path} until it is back"
                )
            self._fallback(rec)  # raises AuditUnavailable: the chain stays where it was
            self._seq, self._hash = rec.seq, rec.hash
            self.written_fallback += 1
            return
        self._seq, self._hash = rec.seq, rec.hash
        self.written_journal += 1
        if not self._journal_ok:
            self._journal_ok = True
            self._say("journald reachable again; audit records go to journald")
            self.write(
                AuditRecord(
                    kind="audit",
                    priority=WARNING,
                    message=f"audit records between journald outages are in {self.fallback_path}",
                )
            )

    def _journal_payload(self, rec: AuditRecord) -> bytes:
        parts = [_PREFIX[rec.kind], _PRIORITY[rec.priority], field_bytes(b"MESSAGE", rec.message)]
        cache = self._encoded
        for name, key in _KEYS:
            value = getattr(rec, name)
            if value is None:
                continue
            if name in _REPEATING:
                encoded = cache.get((key, value))
                if encoded is None:
                    if len(cache) >= _CACHE_MAX:
                        cache.clear()
                    encoded = cache[(key, value)] = field_bytes(key, str(value))
                parts.append(encoded)
            else:
                parts.append(field_bytes(key, value if type(value) is str else str(value)))
        return b"".join(parts)

    def _fallback(self, rec: AuditRecord) -> None:
        line = (
            self._encoder.encode(FallbackRecord(message_id=MESSAGE_IDS[rec.kind], record=rec))
            + b"\n"
        )
        try:
            if self._fd is None:
                self.log_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
                self._fd = os.open(
                    self.fallback_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
                )
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(f"short write ({written} of {len(line)} bytes)")
        except OSError as exc:
            raise AuditUnavailable(
                f"journald and {self.fallback_path} both failed: {exc}"
            ) from None

    def _say(self, text: str) -> None:
        print(f"clawvisor: audit: {text}", file=self._warn, flush=True)

    def save_head(self) -> None:
        """Persist where the chain stands (when it moved since the last save)."""
        if self._head_path is None or self._saved_seq == self._seq:
            return
        try:
            save_head(self._head_path, Head(chain=self.chain, seq=self._seq, hash=self._hash))
            self._saved_seq = self._seq
        except OSError as exc:
            self._say(f"cannot save the chain head to {self._head_path}: {exc}")

    def close(self) -> None:
        """Save the chain head; close the fallback file and the journald socket."""
        self.save_head()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._sender.close()
