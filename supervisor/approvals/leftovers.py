"""Intents a stopped daemon left waiting: what the state directory keeps of each, and
how the next start records each one's outcome (refused: the daemon stopped)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec

from ..audit import NOTICE, WARNING, AuditRecord
from ..audit.settle import settle
from .prompt import Prompt


class PendingRecord(msgspec.Struct, frozen=True):
    """What the state directory keeps of one waiting intent, to refuse it after a crash."""

    id: str
    intent_id: str
    workload: str
    action: str
    #: Where it would have run (the file keeps the name it always had).
    target: str | None
    rule: str
    created: float


def snapshot(prompts: Iterable[Prompt]) -> bytes:
    """The state file's content: one record per intent waiting behind `prompts`."""
    return msgspec.json.encode(
        [
            PendingRecord(
                id=p.id,
                intent_id=w.intent_id,
                workload=p.workload,
                action=p.action,
                target=p.target,
                rule=p.rule.where,
                created=w.created,
            )
            for p in prompts
            for w in p.waiters
        ]
    )


def deny_leftovers(
    state_file: Path,
    audit: Callable[[AuditRecord], bool],
    ended: Callable[[list[PendingRecord]], set[tuple[str, str]]] = lambda records: set(),
) -> int:
    """Audit the intents a stopped daemon left waiting as refused; clear the record.

    `ended` names those whose outcome the trail already holds (the daemon stopped after
    writing it but before the state file caught up): they get no second one."""
    return settle(
        state_file,
        PendingRecord,
        audit,
        ended,
        unreadable=AuditRecord(
            kind="approval",
            priority=WARNING,
            outcome="unavailable",
            message=f"{state_file} was unreadable; its pending requests (if any) count as denied",
        ),
        outcome=lambda r: AuditRecord(
            kind="decision",
            priority=NOTICE,
            intent_id=r.intent_id,
            workload=r.workload,
            action=r.action,
            runs_on=r.target,
            rule=r.rule,
            outcome="unavailable",
            pending=r.id,
            decision="ask",
            final=1,
            message=f"{r.workload} {r.action} -> {r.target or '-'} [{r.id}]: denied "
            "(unavailable): the daemon stopped while it was pending",
        ),
    )
