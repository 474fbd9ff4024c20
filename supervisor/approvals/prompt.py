"""What the broker holds: a prompt (one intent and its rule, as agents see it), the
intents waiting behind it, the votes cast on it, and how each wait ends."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from policy import Rule

from ..audit import AuditRecord
from ..wire.control import PendingView
from .sanitize import shown

Outcome = Literal["approved", "denied", "timeout", "unavailable", "withdrawn", "rate_limited"]
Closing = Literal["approved", "denied", "timeout", "withdrawn", "unavailable", "policy_changed"]


@dataclass(frozen=True, slots=True)
class Resolution:
    """How one waiting intent's ask ended."""

    outcome: Outcome
    approvers: tuple[str, ...] = ()
    #: The grant the approving verdict recorded (the intent is let through by it).
    grant_id: str | None = None
    #: The prompt's key, and the nonce and digest the approving verdict quoted.
    key: str = ""
    nonce: str = ""
    digest: str = ""
    reason: str | None = None
    pending_id: str | None = None


@dataclass(frozen=True, slots=True)
class VerdictTaken:
    """What a verdict did: refused (with why), recorded as a vote, or decided."""

    accepted: bool
    message: str
    decided: bool = False
    votes: int = 0
    quorum: int = 0
    released: int = 0
    still_waiting: int = 0


@dataclass(frozen=True, slots=True)
class GrantRequest:
    """What an approving verdict with a duration asks the grant store to record."""

    key: str
    workload: str
    action: str
    target: str | None
    params: Mapping[str, Any]
    rule: Rule
    approvers: tuple[str, ...]
    seconds: float


def bound_digest(nonce: str, key: str) -> str:
    """The digest a verdict must quote: the prompt's key, salted with its current nonce."""
    return hashlib.sha256(f"{nonce}:{key}".encode()).hexdigest()


@dataclass(slots=True)
class Vote:
    principal: str
    agent: str
    grant: float
    release: int
    #: How the trail names this voter (`web web:alice`); None: agent and principal.
    label: str | None = None


@dataclass(eq=False, slots=True)
class Waiter:
    intent_id: str
    created: float
    deadline: float
    future: asyncio.Future[Resolution]
    timer: asyncio.TimerHandle | None = None
    #: Written to the state directory: only then is it shown, counted and releasable.
    saved: bool = False


@dataclass(eq=False, slots=True)
class Prompt:
    id: str
    key: str
    nonce: str
    digest: str
    workload: str
    action: str
    target: str | None
    params: Mapping[str, Any]
    rule: Rule
    created: float
    #: The intent that opened it (its records name that one).
    intent_id: str
    #: In arrival order (a dict: ordered, and O(1) removal).
    waiters: dict[Waiter, None] = field(default_factory=dict)
    votes: list[Vote] = field(default_factory=list)
    offered: bool = False
    update_due: bool = False

    def view(self, limit: int | None = 200) -> PendingView:
        params: dict[str, str] = {}
        cut = False
        for name, value in self.params.items():
            text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
            if limit is None:
                params[name] = shown(text, 1 << 30)[0]
            else:
                params[name], was_cut = shown(text, limit)
                cut = cut or was_cut
        shown_waiters = self.shown_waiters()
        first = shown_waiters[0] if shown_waiters else None
        return PendingView(
            id=self.id,
            workload=self.workload,
            action=self.action,
            target=self.target,
            params=params,
            cut=cut,
            rule=self.rule.where,
            deadline=first.deadline if first is not None else self.created,
            digest=self.digest,
            grant=self.rule.grant,
            quorum=self.rule.quorum,
            votes=len(self.votes),
            waiting=len(shown_waiters),
        )

    def shown_waiters(self) -> list[Waiter]:
        """The waiters a verdict may release: those already written to the state
        directory (oldest first); one still being written is neither shown nor released."""
        return [w for w in self.waiters if w.saved]

    def record(
        self, priority: int, outcome: str, approver: str | None, message: str
    ) -> AuditRecord:
        """An approval record about this prompt (named by the intent that opened it)."""
        return AuditRecord(
            kind="approval",
            priority=priority,
            intent_id=self.intent_id,
            workload=self.workload,
            action=self.action,
            runs_on=self.target,
            rule=self.rule.where,
            outcome=outcome,
            approver=approver,
            pending=self.id,
            message=f"{self.workload} {self.action} -> {self.target or '-'} [{self.id}]: "
            + message
            + (f" ({len(self.waiters)} waiting)" if len(self.waiters) > 1 else ""),
        )
