"""Executions in flight, written to the state directory before each one starts, so that a
daemon killed while an executor runs (SIGKILL, a crash, the OOM killer) does not leave
that intent without an outcome: the next start records each one still listed as
interrupted, unless the trail already holds its outcome.

Only process executors are listed (an in-process one starts and ends within one step of
the event loop). The writes go through the same off-loop, grouped saver as the pending
asks; a run that cannot be listed does not start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from ..audit import WARNING, AuditRecord
from ..audit.settle import settle
from ..persist import Saver
from .case import Case


class RunningRecord(msgspec.Struct, frozen=True):
    """What the state directory keeps of one execution in flight."""

    intent_id: str
    workload: str
    action: str
    runs_on: str | None
    rule: str | None
    started: float


class Running:
    """The executions in flight, mirrored in `running.json`."""

    def __init__(self, path: Path, on_error: Callable[[OSError], None]) -> None:
        self._runs: dict[int, RunningRecord] = {}
        self._saver = Saver(path, self._snapshot, on_error)

    def _snapshot(self) -> bytes:
        return msgspec.json.encode(list(self._runs.values()))

    async def begin(self, it: Case) -> None:
        """List `it` as running, on disk; OSError when the state directory refuses."""
        self._runs[id(it)] = RunningRecord(
            intent_id=it.request_id,
            workload=it.caller.workload,
            action=it.action.name,
            runs_on=it.runs_on,
            rule=it.ruling.rule_name if it.ruling is not None else None,
            started=time.time(),
        )
        try:
            await self._saver.commit()
        except OSError:
            self._runs.pop(id(it), None)
            raise

    def end(self, it: Case) -> None:
        """`it` has its outcome (written before this): unlist it, soon on disk too."""
        if self._runs.pop(id(it), None) is not None:
            self._saver.touch()

    async def saved(self) -> None:
        """Wait until the file lists exactly what runs now."""
        await self._saver.commit()


def record_interrupted(
    path: Path,
    audit: Callable[[AuditRecord], bool],
    ended: Callable[[list[RunningRecord]], set[tuple[str, str]]],
) -> int:
    """Give each execution a stopped daemon left listed its outcome (interrupted), unless
    the trail already has one; clear the file. How many were recorded."""
    return settle(
        path,
        RunningRecord,
        audit,
        ended,
        # Loudly, as with the pending asks' file: executions may have gone unrecorded.
        unreadable=AuditRecord(
            kind="result",
            priority=WARNING,
            outcome="unavailable",
            message=f"{path} was unreadable; executions it listed (if any) have no recorded result",
        ),
        outcome=lambda r: AuditRecord(
            kind="result",
            priority=WARNING,
            intent_id=r.intent_id,
            workload=r.workload,
            action=r.action,
            runs_on=r.runs_on,
            rule=r.rule,
            outcome="unavailable",
            final=1,
            message=f"{r.workload} {r.action} -> {r.runs_on or '-'}: interrupted: the "
            "daemon stopped while it ran (its result is unknown)",
        ),
    )
