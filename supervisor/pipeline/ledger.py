"""What an intent writes to the audit trail: the record that licenses each step (written,
or the step does not happen) and the one final record that ends it (never two)."""

from __future__ import annotations

import sys
from typing import Any

from ..audit import WARNING, Auditor, AuditRecord, AuditUnavailable
from ..state import DaemonState
from ..wire.common import ErrorCode
from .case import Case
from .outcome import Outcome


class Ledger:
    """An intent's side of the audit trail."""

    def __init__(self, state: DaemonState, trail: Auditor) -> None:
        self.state = state
        self.trail = trail

    def license(self, it: Case, record: AuditRecord, *, serve: bool = True) -> bool:
        """Write the record that lets `it` go on. Only a read-only intent, when the
        operator chose to serve those while the trail is down, may go on a held record."""
        if (
            serve
            and not it.action.mutating
            and self.state.config.settings.audit.readonly_when_unavailable == "serve"
        ):
            return self.trail.note(record)
        try:
            self.trail.license(record)
        except AuditUnavailable as exc:
            print(f"clawvisor: AUDIT FAILED, refusing to act: {exc}", file=sys.stderr, flush=True)
            return False
        return True

    def unlicensed(self, it: Case, what: str) -> Outcome:
        """Refuse `it` because its record could not be written; the refusal waits to be."""
        return self.end(
            it,
            "unavailable",
            f"audit trail unavailable; {what}",
            priority=WARNING,
            what="refused: audit trail unavailable",
        )

    def note_end(self, it: Case, record: AuditRecord) -> None:
        if it.ended:
            return
        it.ended = True
        record.final = 1
        self.trail.note(record)

    def end(
        self,
        it: Case,
        code: ErrorCode,
        message: str,
        *,
        what: str,
        priority: int = WARNING,
        **fields: Any,
    ) -> Outcome:
        """End `it` with an error outcome: its final record (if none yet) and its reply."""
        self.note_end(
            it,
            it.record(priority=priority, outcome=code, message=it.summary(what), **fields),
        )
        return it.outcome(code, message)
