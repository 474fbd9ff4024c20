"""The approvals broker: an `ask` waits here for human verdicts, its deadline, or its end.

A prompt is what agents show: one intent decided by one rule (its key binds both, so an
intent decided by another rule never joins it), with the identical intents waiting
behind it counted. A verdict quotes the prompt's digest (the key salted with a nonce),
and the nonce changes whenever the prompt releases anyone, so one verdict is one
release: "once" releases the oldest waiter only; "allow all N" (`release=N`) at most the
N the human saw; a grant (a duration or always) is recorded once, here, and lets every
waiter through. The first deny, or `quorum` allows from distinct principals, decides.

Each waiter has its own deadline. It is written to the state directory before it joins
(so that after a crash the next start audits it as refused), off the event loop; if
that write fails the intent is answered `unavailable` and no agent is shown anything.
A waiter whose gateway leaves or cancels is withdrawn, and a prompt with nobody left
waiting is withdrawn from every agent.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from policy import Rule

from ..audit import INFO, NOTICE, WARNING, AuditRecord
from ..persist import Saver
from ..wire.control import (
    Agent,
    AlertEvent,
    NoticeEvent,
    PendingEvent,
    PendingView,
    WithdrawnEvent,
    encode_event,
)
from .grants import intent_key
from .leftovers import snapshot
from .prompt import (
    Closing,
    GrantRequest,
    Prompt,
    Resolution,
    VerdictTaken,
    Vote,
    Waiter,
    bound_digest,
)
from .sanitize import shown


class AgentSession(Protocol):
    """A connected approval agent."""

    agent: Agent

    def push(self, data: bytes) -> None:
        """Send one event line to the agent."""
        ...


def _never_granted(request: GrantRequest) -> str:
    raise RuntimeError("this broker records no grants")


class Broker:
    """Holds the prompts, their waiting intents, and the agents that may answer them."""

    def __init__(
        self,
        audit: Callable[[AuditRecord], bool],
        state_file: Path | None,
        *,
        max_pending_per_workload: int = 10,
        clock: Callable[[], float] = time.time,
        record_grant: Callable[[GrantRequest], str] = _never_granted,
    ) -> None:
        self._audit = audit
        self.max_pending_per_workload = max_pending_per_workload
        self._clock = clock
        self._record_grant = record_grant
        self._pending: dict[str, Prompt] = {}
        self._by_key: dict[str, Prompt] = {}
        self._per_workload: Counter[str] = Counter()
        self._agents: set[AgentSession] = set()
        self._closed = False
        self._saver = (
            Saver(state_file, self._snapshot, self._save_failed) if state_file is not None else None
        )

    # --- agents ----------------------------------------------------------------------

    def subscribe(self, session: AgentSession) -> list[PendingView]:
        """Start pushing events to `session`; the requests it may answer now."""
        self._agents.add(session)
        return [
            p.view()
            for p in self._pending.values()
            if p.offered and session.agent in p.rule.approvers
        ]

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
        """The prompts shown now, oldest first."""
        return [p.view() for p in self._pending.values() if p.offered]

    @property
    def waiting(self) -> int:
        """Intents waiting for a verdict, over all prompts."""
        return sum(len(p.waiters) for p in self._pending.values())

    def show(self, pending_id: str) -> PendingView | None:
        """One shown prompt with every value in full."""
        p = self._pending.get(pending_id)
        return p.view(limit=None) if p is not None and p.offered else None

    async def ask(
        self,
        *,
        intent_id: str,
        workload: str,
        action: str,
        target: str | None,
        params: Mapping[str, Any],
        rule: Rule,
        withdrawn: asyncio.Future[str] | None = None,
        key: str | None = None,
    ) -> Resolution:
        """Wait for the verdict on one intent (or its deadline, or its withdrawal).

        `key` (the intent with its deciding rule, computed when not given) decides which
        waiting intents share a prompt. `withdrawn` resolves (with a reason) when the
        intent's gateway is gone.
        """
        if key is None:
            key = intent_key(workload, action, target, params, rule.identity)
        if self._closed:
            return Resolution("unavailable", key=key, reason="the daemon is shutting down")
        p = self._by_key.get(key)
        if p is None:
            if self._per_workload[workload] >= self.max_pending_per_workload:
                return Resolution("rate_limited", key=key)
            p = self._new_prompt(intent_id, key, workload, action, target, params, rule)
        loop = asyncio.get_running_loop()
        now = self._clock()
        w = Waiter(
            intent_id=intent_id,
            created=now,
            deadline=now + rule.timeout,
            future=loop.create_future(),
        )
        w.timer = loop.call_later(rule.timeout, self._expire, p, w)
        p.waiters[w] = None
        try:
            return await self._wait(p, w, withdrawn)
        finally:
            if not w.future.done():  # cancelled from outside (an interrupted shutdown)
                self._leave(p, w, Resolution("withdrawn", key=p.key), "withdrawn")

    async def _wait(
        self, p: Prompt, w: Waiter, withdrawn: asyncio.Future[str] | None
    ) -> Resolution:
        if self._saver is not None:
            try:
                await self._saver.commit()
            except OSError as exc:
                if not w.future.done():
                    self._leave(
                        p,
                        w,
                        Resolution(
                            "unavailable",
                            key=p.key,
                            reason=f"the request could not be recorded in the state "
                            f"directory ({exc.strerror or exc}); nobody was asked",
                        ),
                        "unavailable",
                    )
                return w.future.result()
        if w.future.done():  # timed out, or the daemon closed, while it was being saved
            return w.future.result()
        if withdrawn is not None and withdrawn.done():
            # Gone while it was being saved: it is not shown to anyone at all.
            reason = withdrawn.result() if not withdrawn.cancelled() else "withdrawn"
            self._leave(p, w, Resolution("withdrawn", key=p.key, reason=reason), "withdrawn")
            return w.future.result()
        w.saved = True
        if not p.offered:
            self._offer(p)
        else:
            self._update_soon(p)
        if withdrawn is None:
            return await asyncio.shield(w.future)
        await asyncio.wait((w.future, withdrawn), return_when=asyncio.FIRST_COMPLETED)
        if withdrawn.done():
            # Gone before or as it was decided: never run for nobody.
            reason = withdrawn.result() if not withdrawn.cancelled() else "withdrawn"
            if not w.future.done():
                self._leave(p, w, Resolution("withdrawn", key=p.key, reason=reason), "withdrawn")
                return w.future.result()
            return Resolution("withdrawn", key=p.key, reason=reason, pending_id=p.id)
        return w.future.result()

    def _new_prompt(
        self,
        intent_id: str,
        key: str,
        workload: str,
        action: str,
        target: str | None,
        params: Mapping[str, Any],
        rule: Rule,
    ) -> Prompt:
        nonce = secrets.token_hex(16)
        p = Prompt(
            id=f"p-{secrets.token_hex(5)}",
            key=key,
            nonce=nonce,
            digest=bound_digest(nonce, key),
            workload=workload,
            action=action,
            target=target,
            params=params,
            rule=rule,
            created=self._clock(),
            intent_id=intent_id,
        )
        self._pending[p.id] = p
        self._by_key[key] = p
        self._per_workload[workload] += 1
        return p

    def _offer(self, p: Prompt) -> None:
        p.offered = True
        sent = self._push(encode_event(PendingEvent(request=p.view())), p.rule.approvers)
        self._record(
            p,
            NOTICE,
            "offered",
            None,
            f"asking {', '.join(p.rule.approvers)} ({sent} agents connected); "
            f"times out in {p.rule.timeout:g} s",
        )

    def _update_soon(self, p: Prompt) -> None:
        """Show agents the prompt's new state once this loop iteration is over (a burst
        of identical asks is one update, not one per ask)."""
        if not p.update_due:
            p.update_due = True
            asyncio.get_running_loop().call_soon(self._push_update, p)

    def _push_update(self, p: Prompt) -> None:
        p.update_due = False
        if p.offered and self._pending.get(p.id) is p:
            self._push(encode_event(PendingEvent(request=p.view())), p.rule.approvers)

    def _expire(self, p: Prompt, w: Waiter) -> None:
        if not w.future.done():
            self._leave(p, w, Resolution("timeout", key=p.key, pending_id=p.id), "timeout")

    def _leave(self, p: Prompt, w: Waiter, resolution: Resolution, closing: Closing) -> None:
        """`w` stops waiting with `resolution`; a prompt nobody waits behind is closed."""
        if w.timer is not None:
            w.timer.cancel()
        p.waiters.pop(w, None)
        if not w.future.done():
            w.future.set_result(resolution)
        if self._saver is not None:
            self._saver.touch()
        if not p.waiters:
            self._close(p, closing, None)
        else:
            self._update_soon(p)

    def _close(self, p: Prompt, closing: Closing, by: str | None, note: str = "") -> None:
        if self._pending.pop(p.id, None) is None:
            return
        if self._by_key.get(p.key) is p:
            del self._by_key[p.key]
        self._per_workload[p.workload] -= 1
        if self._per_workload[p.workload] <= 0:
            del self._per_workload[p.workload]
        if self._saver is not None:
            self._saver.touch()
        if not p.offered:
            return  # nobody was shown it: nothing to withdraw or record
        self._push(encode_event(WithdrawnEvent(id=p.id, reason=closing, by=by)), p.rule.approvers)
        priority = INFO if closing == "approved" else NOTICE
        text = f"request {closing.replace('_', ' ')}" + (f" by {by}" if by else "") + note
        self._record(p, priority, closing, by, text)

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
        release: int = 1,
        label: str | None = None,
    ) -> VerdictTaken:
        """Apply one verdict to a shown prompt: `principal` counts for quorum (one person
        through two agents is one), `label` is how the trail names them."""
        p = self._pending.get(pending_id)
        if p is None or not p.offered:
            return VerdictTaken(
                False, f"{pending_id} is not pending (answered, timed out or unknown)"
            )
        who = f"{agent} {label or principal}"
        quorum = p.rule.quorum
        if not secrets.compare_digest(digest, p.digest):
            self._record(
                p,
                WARNING,
                "verdict_refused",
                who,
                "verdict refused: its digest is not this request's current one",
            )
            return VerdictTaken(
                False,
                "digest does not match this request now: the intent differs, or the "
                "request changed since it was shown (show it again)",
            )
        if agent not in p.rule.approvers:
            self._record(
                p,
                WARNING,
                "verdict_refused",
                who,
                f"verdict refused: rule {p.rule.where} does not let {agent} answer",
            )
            return VerdictTaken(False, f"rule {p.rule.where} does not accept answers from {agent}")
        if not allow:
            waiting = list(p.waiters)
            refused = Resolution(
                "denied", approvers=(who,), key=p.key, reason=reason, pending_id=p.id
            )
            for w in waiting:
                if w.timer is not None:
                    w.timer.cancel()
                if not w.future.done():
                    w.future.set_result(refused)
            p.waiters.clear()
            note = f" ({len(waiting)} waiting refused)" if len(waiting) > 1 else ""
            self._close(p, "denied", who, note)
            return VerdictTaken(True, "denied", decided=True, votes=len(p.votes), quorum=quorum)
        if grant > p.rule.grant_max:
            return VerdictTaken(
                False,
                f"rule {p.rule.where} lets an approval grant at most {p.rule.grant}",
                votes=len(p.votes),
                quorum=quorum,
            )
        if any(v.principal == principal for v in p.votes):
            return VerdictTaken(
                False,
                f"{principal} already approved; quorum {quorum} needs different approvers",
                votes=len(p.votes),
                quorum=quorum,
            )
        p.votes.append(Vote(principal, agent, grant, release, label=who))
        self._record(p, INFO, "vote", who, f"approved by {who} ({len(p.votes)} of {quorum})")
        if len(p.votes) < quorum:
            self._update_soon(p)
            return VerdictTaken(True, "vote recorded", votes=len(p.votes), quorum=quorum)
        return self._release(p, quorum)

    def _release(self, p: Prompt, quorum: int) -> VerdictTaken:
        votes = p.votes
        approvers = tuple(v.label or f"{v.agent} {v.principal}" for v in votes)
        seconds = min(v.grant for v in votes)
        grant_id: str | None = None
        if seconds > 0:
            grant_id = self._record_grant(
                GrantRequest(
                    key=p.key,
                    workload=p.workload,
                    action=p.action,
                    target=p.target,
                    params=p.params,
                    rule=p.rule,
                    approvers=approvers,
                    seconds=seconds,
                )
            )
        releasable = p.shown_waiters()
        if seconds > 0:
            count = len(releasable)  # the grant covers each of them
        else:
            count = min(*(v.release for v in votes), len(releasable))
        released = releasable[:count]
        approved = Resolution(
            "approved",
            approvers=approvers,
            grant_id=grant_id,
            key=p.key,
            nonce=p.nonce,
            digest=p.digest,
            pending_id=p.id,
        )
        for w in released:
            if w.timer is not None:
                w.timer.cancel()
            del p.waiters[w]
            if not w.future.done():
                w.future.set_result(approved)
        if self._saver is not None:
            self._saver.touch()
        left = len(p.shown_waiters())
        by = ", ".join(approvers)
        how = f"released {count} of {count + left}" + (f" (grant {grant_id})" if grant_id else "")
        if p.waiters:  # shown ones left, or ones still being saved (shown once they are)
            # One verdict is one release: the rest wait for answers of their own, which
            # must quote the new digest.
            p.nonce = secrets.token_hex(16)
            p.digest = bound_digest(p.nonce, p.key)
            p.votes = []
            self._record(p, INFO, "approved", by, f"approved by {by}: {how}; {left} still waiting")
            self._update_soon(p)
        else:
            self._close(p, "approved", by, f": {how}")
        return VerdictTaken(
            True,
            "approved",
            decided=True,
            votes=len(votes),
            quorum=quorum,
            released=count,
            still_waiting=left,
        )

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
            for w in list(p.waiters):
                self._leave(
                    p,
                    w,
                    Resolution("unavailable", key=p.key, reason="the daemon is shutting down"),
                    "unavailable",
                )

    # --- records -----------------------------------------------------------------------

    def _record(
        self, p: Prompt, priority: int, outcome: str, approver: str | None, message: str
    ) -> None:
        self._audit(p.record(priority, outcome, approver, message))

    def _snapshot(self) -> bytes:
        return snapshot(self._pending.values())

    def _save_failed(self, exc: OSError) -> None:
        self._audit(
            AuditRecord(
                kind="approval",
                priority=WARNING,
                outcome="unavailable",
                detail=str(exc),
                message=f"the pending requests could not be saved to the state directory: {exc}",
            )
        )

    async def saved(self) -> None:
        """Wait until the state file lists exactly the intents waiting now."""
        if self._saver is not None:
            await self._saver.commit()
