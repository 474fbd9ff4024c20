"""The audit trail: what the daemon decided, ran, refused and saw, to journald or a file.

- `trail`: the Auditor, the one writer, with its two verbs (`license`: written or the
  action does not run; `note`: written or held, never dropped silently);
- `record`: the record, its journald bytes and its hash (one definition);
- `journal`: journald's native protocol, reporting failure instead of hiding it;
- `chain`: the hash chain across records and restarts, and `audit verify`;
- `log`: reading the trail back (`audit log`, `policy replay`).
"""

from __future__ import annotations

from .record import CRIT, ERR, INFO, MESSAGE_IDS, NOTICE, WARNING, AuditRecord, Kind
from .trail import Auditor, AuditUnavailable, bounded_json

__all__ = [
    "CRIT",
    "ERR",
    "INFO",
    "MESSAGE_IDS",
    "NOTICE",
    "WARNING",
    "AuditRecord",
    "AuditUnavailable",
    "Auditor",
    "Kind",
    "bounded_json",
]
