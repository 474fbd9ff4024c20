"""What a stopped daemon left listed in a state file (asks waiting, executions running):
each entry gets its one audited outcome at the next start, unless the trail already holds
it; an unreadable file is recorded loudly, never skipped."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec

from ..persist import read_or_none, write_atomic
from .record import AuditRecord


class Leftover(Protocol):
    @property
    def workload(self) -> str: ...
    @property
    def intent_id(self) -> str: ...


L = TypeVar("L", bound=Leftover)


def settle(
    path: Path,
    entry: type[L],
    audit: Callable[[AuditRecord], bool],
    ended: Callable[[list[L]], set[tuple[str, str]]],
    *,
    unreadable: AuditRecord,
    outcome: Callable[[L], AuditRecord],
) -> int:
    """Audit `outcome(e)` for each entry of `path` whose (workload, intent) `ended` does not
    name, `unreadable` if the file cannot be decoded; then empty the file. How many."""
    data = read_or_none(path)
    if not data:
        return 0
    entries: list[L]
    try:
        entries = msgspec.json.decode(data, type=list[entry])  # type: ignore[valid-type]
    except msgspec.DecodeError:
        entries = []
        audit(unreadable)
    done = ended(entries) if entries else set()
    left = [e for e in entries if (e.workload, e.intent_id) not in done]
    for e in left:
        audit(outcome(e))
    write_atomic(path, b"[]")
    return len(left)
