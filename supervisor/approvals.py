"""The approvals broker: an `ask` waits here for human verdicts, its deadline, or its end.

A pending request is offered to every subscribed agent the rule allows. Its digest binds
any verdict to the exact intent shown (workload, action, target, params and a nonce):
a verdict quoting another digest is refused. The first deny, or `quorum` allows from
distinct approvers, decides; the other prompts are withdrawn. Identical asks from one
workload share one prompt, and each workload has a cap on pending requests. Every
pending request is recorded in the state directory so that, after a crash, the next
start audits it as denied.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec

from policy import Rule

from .audit import INFO, NOTICE, WARNING, AuditRecord
from .grants import intent_key
from .protocol import (
    Agent,
    AlertEvent,
    NoticeEvent,
    PendingEvent,
    PendingView,
    WithdrawnEvent,
    encode_event,
)
from .sanitize import shown
from .statefile import read_or_none, write_atomic

Outcome = Literal["approved", "denied", "timeout", "unavailable", "cancelled", "rate_limited"]
_ANSWERS: dict[str, Literal["approved", "denied", "timeout", "cancelled", "unavailable"]] = {
    "approved": "approved",
    "denied": "denied",
    "timeout": "timeout",
    "cancelled": "cancelled",
    "unavailable": "unavailable",
}


class AgentSession(Protocol):
    """A connected approval agent."""

    agent: Agent

    def push(self, data: bytes) -> None:
        """Send one event line to the agent."""
        ...


@dataclass(frozen=True, slots=True)
class Resolution:
    """How a pending request ended."""

    outcome: Outcome
    approvers: tuple[str, ...] = ()
    #: Seconds the approvers granted beyond this once (0: once; inf: always).
    grant: float = 0.0
    key: str = ""
    nonce: str = ""
    digest: str = ""
    reason: str | None = None
    pending_id: str | None = None


def bound_digest(nonce: str, key: str) -> str:
    """The digest a verdict must quote: the intent key, salted with the request's nonce."""
    return hashlib.sha256(f"{nonce}:{key}".encode()).hexdigest()


@dataclass(slots=True)
class _Vote:
    principal: str
    agent: str
    grant: float


@dataclass(slots=True)
class _Pending:
    id: str
    key: str
    nonce: str
    digest: str
    intent_id: str
    workload: str
    action: str
    target: str | None
    params: Mapping[str, Any]
    rule: Rule
    created: float
    deadline: float
    future: asyncio.Future[Resolution]
    timer: asyncio.TimerHandle | None = None
    votes: list[_Vote] = field(default_factory=list)
    waiters: int = 0

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
        return PendingView(
            id=self.id,
            workload=self.workload,
            action=self.action,
            target=self.target,
            params=params,
            cut=cut,
            rule=self.rule.where,
            deadline=self.deadline,
            digest=self.digest,
            grant=self.rule.grant,
            quorum=self.rule.quorum,
            votes=len(self.votes),
        )


class PendingRecord(msgspec.Struct, frozen=True):
    """What the state directory keeps of a pending request, to deny it after a crash."""

    id: str
    intent_id: str
    workload: str
    action: str
    target: str | None
    rule: str
    created: float


class Broker:
    """Holds pending asks and the agents that may answer them."""

    def __init__(
        self,
        audit: Callable[[AuditRecord], bool],
        state_file: Path | None,
        *,
        max_pending_per_workload: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._audit = audit
        self._state_file = state_file
        self.max_pending_per_workload = max_pending_per_workload
        self._clock = clock
        self._pending: dict[str, _Pending] = {}
        self._by_key: dict[str, _Pending] = {}
        self._agents: set[AgentSession] = set()
        self._closed = False

    # --- agents ----------------------------------------------------------------------

    def subscribe(self, session: AgentSession) -> list[PendingView]:
        """Start pushing events to `session`; the requests it may answer now."""
        self._agents.add(session)
        return [p.view() for p in self._pending.values() if session.agent in p.rule.approvers]

    def unsubscribe(self, session: AgentSession) -> None:
        """Stop pushing events to `session` (its prompts simply stay unanswered)."""
        self._agents.discard(session)

    def _push(self, data: bytes, agents: tuple[str, ...] | None = None) -> int:
        sent = 0
        for session in list(self._agents):
            if agents is None or session.agent in agents:
                session.push(data)
                sent += 1
        return sent

    # --- asking ----------------------------------------------------------------------

    @property
    def pending(self) -> list[PendingView]:
        """The requests waiting now, oldest first."""
        return [p.view() for p in self._pending.values()]

    def show(self, pending_id: str) -> PendingView | None:
        """One pending request with every value in full."""
        p = self._pending.get(pending_id)
        return p.view(limit=None) if p is not None else None

    async def ask(
        self,
        *,
        intent_id: str,
        workload: str,
        action: str,
        target: str | None,
        params: Mapping[str, Any],
        rule: Rule,
    ) -> Resolution:
        """Wait for the verdict on an intent; identical pending intents share one prompt."""
        if self._closed:
            return Resolution("unavailable")
        key = intent_key(workload, action, target, params)
        p = self._by_key.get(key)
        if p is None:
            if (
                sum(1 for q in self._pending.values() if q.workload == workload)
                >= self.max_pending_per_workload
            ):
                return Resolution("rate_limited", key=key)
            p = self._open(intent_id, key, workload, action, target, params, rule)
        p.waiters += 1
        try:
            return await asyncio.shield(p.future)
        finally:
            p.waiters -= 1
            if p.waiters == 0 and not p.future.done():
                # Every gateway waiting for it has gone: nobody would get the result.
                self._finish(p, Resolution("cancelled", key=p.key), "cancelled", None)

    def _open(
        self,
        intent_id: str,
        key: str,
        workload: str,
        action: str,
        target: str | None,
        params: Mapping[str, Any],
        rule: Rule,
    ) -> _Pending:
        loop = asyncio.get_running_loop()
        nonce = secrets.token_hex(16)
        now = self._clock()
        p = _Pending(
            id=f"p-{secrets.token_hex(5)}",
            key=key,
            nonce=nonce,
            digest=bound_digest(nonce, key),
            intent_id=intent_id,
            workload=workload,
            action=action,
            target=target,
            params=params,
            rule=rule,
            created=now,
            deadline=now + rule.timeout,
            future=loop.create_future(),
        )
        p.timer = loop.call_later(rule.timeout, self._expire, p.id)
        self._pending[p.id] = p
        self._by_key[key] = p
        self._save()
        sent = self._push(encode_event(PendingEvent(request=p.view())), rule.approvers)
        self._record(
            p,
            NOTICE,
            "offered",
            None,
            f"asking {', '.join(rule.approvers)} ({sent} agents connected); "
            f"times out in {rule.timeout:g} s",
        )
        return p

    def _expire(self, pending_id: str) -> None:
        p = self._pending.get(pending_id)
        if p is not None and not p.future.done():
            self._finish(p, Resolution("timeout", key=p.key), "timeout", None)

    def _finish(self, p: _Pending, resolution: Resolution, reason: str, by: str | None) -> None:
        if p.timer is not None:
            p.timer.cancel()
        self._pending.pop(p.id, None)
        if self._by_key.get(p.key) is p:
            del self._by_key[p.key]
        self._save()
        if not p.future.done():
            p.future.set_result(resolution)
        self._push(
            encode_event(WithdrawnEvent(id=p.id, reason=_ANSWERS[reason], by=by)), p.rule.approvers
        )
        priority = INFO if reason == "approved" else NOTICE
        self._record(p, priority, reason, by, f"request {reason}" + (f" by {by}" if by else ""))

    # --- verdicts --------------------------------------------------------------------

    def verdict(
        self,
        *,
        pending_id: str,
        digest: str,
        allow: bool,
        agent: str,
        principal: str,
        grant: float,
        reason: str | None,
    ) -> tuple[bool, str, int, int]:
        """Apply one verdict. Returns (accepted, message, votes, quorum)."""
        p = self._pending.get(pending_id)
        if p is None:
            return False, f"{pending_id} is not pending (answered, timed out or unknown)", 0, 0
        who = f"{agent} {principal}"
        if not secrets.compare_digest(digest, p.digest):
            self._record(
                p,
                WARNING,
                "verdict_refused",
                who,
                "verdict refused: its digest is not this request's",
            )
            return False, "digest does not match this request: the intent differs", 0, 0
        if agent not in p.rule.approvers:
            self._record(
                p,
                WARNING,
                "verdict_refused",
                who,
                f"verdict refused: rule {p.rule.where} does not let {agent} answer",
            )
            return False, f"rule {p.rule.where} does not accept answers from {agent}", 0, 0
        if not allow:
            self._finish(
                p,
                Resolution("denied", approvers=(who,), key=p.key, reason=reason, pending_id=p.id),
                "denied",
                who,
            )
            return True, "denied", len(p.votes), p.rule.quorum
        if grant > p.rule.grant_max:
            return (
                False,
                (f"rule {p.rule.where} lets an approval grant at most {p.rule.grant}"),
                len(p.votes),
                p.rule.quorum,
            )
        if any(v.principal == principal for v in p.votes):
            return (
                False,
                (f"{principal} already approved; quorum {p.rule.quorum} needs different approvers"),
                len(p.votes),
                p.rule.quorum,
            )
        p.votes.append(_Vote(principal=principal, agent=agent, grant=grant))
        self._record(p, INFO, "vote", who, f"approved by {who} ({len(p.votes)} of {p.rule.quorum})")
        if len(p.votes) < p.rule.quorum:
            return True, "vote recorded", len(p.votes), p.rule.quorum
        approvers = tuple(f"{v.agent} {v.principal}" for v in p.votes)
        granted = min(v.grant for v in p.votes)
        self._finish(
            p,
            Resolution(
                "approved",
                approvers=approvers,
                grant=granted,
                key=p.key,
                nonce=p.nonce,
                digest=p.digest,
                pending_id=p.id,
            ),
            "approved",
            ", ".join(approvers),
        )
        return True, "approved", len(p.votes), p.rule.quorum

    def alert(self, event: AlertEvent) -> int:
        """Show every connected agent an alert; how many got it."""
        return self._push(encode_event(event))

    def notice(self, workload: str, message: str) -> int:
        """Show every connected agent a message from a workload; how many got it."""
        safe, _ = shown(message, 500)
        return self._push(encode_event(NoticeEvent(workload=workload, message=safe)))

    def close(self) -> None:
        """Refuse new asks and answer every waiting one as `unavailable`."""
        self._closed = True
        for p in list(self._pending.values()):
            self._finish(p, Resolution("unavailable", key=p.key), "unavailable", None)

    # --- records -----------------------------------------------------------------------

    def _record(
        self, p: _Pending, priority: int, outcome: str, approver: str | None, message: str
    ) -> None:
        self._audit(
            AuditRecord(
                kind="approval",
                priority=priority,
                intent_id=p.intent_id,
                workload=p.workload,
                action=p.action,
                target=p.target,
                rule=p.rule.where,
                outcome=outcome,
                approver=approver,
                pending=p.id,
                message=f"{p.workload} {p.action} -> {p.target or '-'} [{p.id}]: {message}",
            )
        )

    def _save(self) -> None:
        if self._state_file is None:
            return
        records = [
            PendingRecord(
                id=p.id,
                intent_id=p.intent_id,
                workload=p.workload,
                action=p.action,
                target=p.target,
                rule=p.rule.where,
                created=p.created,
            )
            for p in self._pending.values()
        ]
        write_atomic(self._state_file, msgspec.json.encode(records))


def deny_leftovers(state_file: Path, audit: Callable[[AuditRecord], bool]) -> int:
    """Audit pending requests a stopped daemon left behind as denied; clear the record."""
    data = read_or_none(state_file)
    if not data:
        return 0
    try:
        records = msgspec.json.decode(data, type=list[PendingRecord])
    except msgspec.DecodeError:
        records = []
        audit(
            AuditRecord(
                kind="approval",
                priority=WARNING,
                outcome="unavailable",
                message=f"{state_file} was unreadable; its pending requests "
                "(if any) count as denied",
            )
        )
    for r in records:
        audit(
            AuditRecord(
                kind="approval",
                priority=NOTICE,
                intent_id=r.intent_id,
                workload=r.workload,
                action=r.action,
                target=r.target,
                rule=r.rule,
                outcome="unavailable",
                pending=r.id,
                decision="ask",
                message=f"{r.workload} {r.action} -> {r.target or '-'} [{r.id}]: denied "
                "(unavailable): the daemon stopped while it was pending",
            )
        )
    write_atomic(state_file, b"[]")
    return len(records)
