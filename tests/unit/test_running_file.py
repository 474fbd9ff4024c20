"""Executions a stopped daemon left listed get an outcome at the next start."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec

from supervisor.audit import AuditRecord
from supervisor.pipeline.running import RunningRecord, record_interrupted


def recorder(seen: list[AuditRecord]) -> Callable[[AuditRecord], bool]:
    def audit(rec: AuditRecord) -> bool:
        seen.append(rec)
        return True

    return audit


def test_an_unreadable_executions_file_is_recorded_loudly_and_cleared(tmp_path: Path) -> None:
    path = tmp_path / "running.json"
    path.write_bytes(b"{not json")
    seen: list[AuditRecord] = []
    assert record_interrupted(path, recorder(seen), lambda _: set()) == 0
    [warning] = seen
    assert "unreadable" in warning.message and warning.outcome == "unavailable"
    assert path.read_bytes() == b"[]"


def test_a_listed_execution_without_an_outcome_is_recorded_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "running.json"
    rec = RunningRecord("i1", "w", "sync-out", "w", "policy.d/a.toml:1", 1.0)
    path.write_bytes(msgspec.json.encode([rec]))
    seen: list[AuditRecord] = []
    assert record_interrupted(path, recorder(seen), lambda _: set()) == 1
    assert seen[0].intent_id == "i1" and seen[0].final == 1
