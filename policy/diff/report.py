"""What `policy diff` found, as data (for `--json`) and as text for people."""

from __future__ import annotations

from typing import Any

import msgspec

from ..model import Decision

#: How far a decision lets a request go: deny < ask < allow.
RANK: dict[Decision, int] = {"deny": 0, "ask": 1, "allow": 2}


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """How one rule (or the default) decides a request in a cell, and what comes with it."""

    decision: Decision
    rule: str
    runs_on: str | None = None
    approvers: tuple[str, ...] = ()
    quorum: int = 1
    timeout: float | None = None
    rate: str | None = None
    #: Requests per second the rate lets through in the long run, and its burst.
    rate_per_s: float | None = None
    burst: int | None = None
    grant: str | None = None

    def meaning(self) -> tuple[Any, ...]:
        """Everything but where the rule was written: equal meanings decide alike."""
        return (
            self.decision,
            self.runs_on,
            self.approvers,
            self.quorum,
            self.timeout,
            self.rate,
            self.grant,
        )

    def shown(self) -> str:
        """`allow (policy.d/10.toml:3)`, with where it runs when no target was named."""
        return f"{self.decision} ({self.rule})"


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """One way requests in a cell are decided differently, with a request that shows it.

    `wider`: the request goes further than before (a denied one is allowed or asked, an
    asked one allowed outright, it runs on another workload, or a looser rate).
    """

    kind: str
    wider: bool
    #: The request goes less far (denied now, asked now, a stricter rate, elsewhere).
    narrower: bool
    before: str
    after: str
    params: dict[str, Any]
    #: Optional params the request leaves out (an egress-allow with no port: every port).
    omitted: list[str] = []


class CellDiff(msgspec.Struct, frozen=True, kw_only=True):
    """One (source, action, target) whose deciding rules changed; target None = none named."""

    source: str
    action: str
    target: str | None
    #: The rules that apply to the cell, in order (the first that matches decides), and
    #: the default deny: before and after.
    before: list[str]
    after: list[str]
    changes: list[Change]
    #: True when the cell has no request that goes further than before: a proof.
    none_wider: bool
    #: True when the cell has no request that goes less far than before.
    none_narrower: bool


class PolicyDiff(msgspec.Struct, frozen=True, kw_only=True):
    """Every cell whose rules changed, and how many cells there are and did not change."""

    cells: list[CellDiff]
    total_cells: int
    unchanged_cells: int
    newly_allowed: bool


def _params(params: dict[str, Any], omitted: list[str]) -> str:
    shown = " ".join(f"{k}={msgspec.json.encode(v).decode()}" for k, v in params.items())
    if omitted:
        shown += f" ({', '.join(omitted)} omitted)"
    return shown.strip() or "(no params)"


def render_text(diff: PolicyDiff, old_name: str, new_name: str) -> str:
    """The diff for a terminal: each changed cell, its witnesses and its proofs."""
    lines = [
        f"policy diff {old_name} -> {new_name}: {diff.total_cells} cells, "
        f"{len(diff.cells)} with changed rules, {diff.unchanged_cells} unchanged"
    ]
    for cell in diff.cells:
        target = cell.target if cell.target is not None else "(no target)"
        lines.append("")
        lines.append(f"{cell.source} {cell.action} -> {target}")
        lines.append(f"  before: {' | '.join(cell.before)}")
        lines.append(f"  after:  {' | '.join(cell.after)}")
        for ch in cell.changes:
            mark = "WIDER" if ch.wider else "narrower" if ch.narrower else "changed"
            lines.append(f"  {mark:<8} {ch.kind}: {_params(ch.params, ch.omitted)}")
            lines.append(f"           was {ch.before}, now {ch.after}")
        if cell.none_wider:
            lines.append("  proved: no request goes further than before")
        if cell.none_narrower:
            lines.append("  proved: no request goes less far than before")
    lines.append("")
    lines.append("something is newly allowed" if diff.newly_allowed else "nothing is newly allowed")
    return "\n".join(lines) + "\n"
