"""Asking: a grant that already covers the intent, or a human through the broker; and, at
release, the check that the policy in force still decides the intent by the very rule it
was asked under (else the approval releases nothing)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Final

from policy import Rule, evaluate

from ..approvals.broker import Broker
from ..approvals.grants import GrantStore
from ..approvals.prompt import GrantRequest, Resolution, bound_digest
from ..audit import NOTICE, Auditor, AuditRecord, bounded_json
from ..state import DaemonState
from ..wire.common import ErrorCode
from .case import Case
from .execute import Execution
from .ledger import Ledger
from .outcome import Outcome

#: How an ask that did not end in an approval is answered.
_REFUSALS: Final[dict[str, tuple[ErrorCode, str]]] = {
    "denied": ("approval_denied", "a human refused the request"),
    "timeout": ("approval_timeout", "nobody answered in time"),
    "withdrawn": ("cancelled", "withdrawn before anyone approved it; nothing ran"),
    "unavailable": ("unavailable", "the daemon could not ask"),
    "rate_limited": ("rate_limited", "too many requests of this workload await approval"),
}


class Asking:
    """Intents the policy asks about: let through by a grant, or put to humans."""

    def __init__(
        self,
        state: DaemonState,
        ledger: Ledger,
        broker: Broker,
        grants: GrantStore,
        execution: Execution,
    ) -> None:
        self.state = state
        self.ledger = ledger
        self.broker = broker
        self.grants = grants
        self.execution = execution

    async def ask_then_run(self, it: Case, rule: Rule) -> Outcome:
        key = it.key(rule)
        grant = self.grants.match(key)
        if grant is not None:
            rec = it.record(
                outcome="granted",
                approver=", ".join(grant.approvers),
                detail=grant.id,
                message=it.summary(f"ask: let through by grant {grant.id}"),
            )
            if not self.ledger.license(it, rec):
                return self.ledger.unlicensed(it, "not executed")
            return await self.execution.run(it)
        pending = it.record(
            priority=NOTICE, outcome="pending", message=it.summary("ask (waiting for approval)")
        )
        if not self.ledger.license(it, pending, serve=False):
            return self.ledger.unlicensed(it, "nobody was asked")
        res = await self.broker.ask(
            intent_id=it.request_id,
            key=key,
            workload=it.caller.account.workload,
            action=it.action.name,
            target=it.runs_on,
            params=it.params,
            rule=rule,
            withdrawn=it.job.withdrawal() if it.job is not None else None,
        )
        if res.outcome != "approved":
            return self._refused(it, rule, res)
        why_not = self._still_decided_by(it, rule, res)
        if why_not is not None:
            return self.ledger.end(
                it,
                "approval_denied",
                why_not,
                priority=NOTICE,
                what=f"approved but not executed: {why_not}",
                approver=", ".join(res.approvers),
            )
        rec = it.record(
            outcome="approved",
            approver=", ".join(res.approvers),
            pending=res.pending_id,
            detail=res.grant_id,
            message=it.summary(f"ask: approved by {', '.join(res.approvers)}"),
        )
        if not self.ledger.license(it, rec):
            return self.ledger.unlicensed(it, "not executed")
        return await self.execution.run(it)

    def _refused(self, it: Case, rule: Rule, res: Resolution) -> Outcome:
        code, message = _REFUSALS[res.outcome]
        if res.outcome == "timeout":
            message = f"nobody answered within {rule.timeout:g} s"
        if res.reason:
            message += f": {res.reason}"
        return self.ledger.end(
            it,
            code,
            message,
            priority=NOTICE,
            what=f"refused ({res.outcome})",
            approver=", ".join(res.approvers) or None,
            pending=res.pending_id,
        )

    def _still_decided_by(self, it: Case, rule: Rule, res: Resolution) -> str | None:
        """Why an approved intent may not run now, or None: it must still be decided by
        the same rule under the policy in force, be the intent the approval was for,
        and still have a gateway waiting for it."""
        if it.job is not None and it.job.reason is not None:
            return f"withdrawn ({it.job.reason})"
        if not secrets.compare_digest(bound_digest(res.nonce, it.key(rule)), res.digest):
            return "the approval does not match this intent"
        source = it.caller.account.workload
        config = self.state.config
        account = config.by_uid.get(it.caller.peer.uid)
        if account is None or account.workload != source:
            return (
                "the configuration changed while it waited: its sender is no longer that workload"
            )
        if it.runs_on is not None and it.runs_on not in config.workloads:
            return "the policy changed while it waited: its target is gone"
        now = evaluate(self.state.policy, source, it.action.name, it.intent.target, it.params)
        if now.rule is None or now.rule.identity != rule.identity:
            return (
                "the policy changed while it waited: it is now decided "
                f"{now.decision} by {now.rule_name}, not by {rule.where} as asked"
            )
        return None


def grant_recorder(
    grants: GrantStore, trail: Auditor, params_cap: int
) -> Callable[[GrantRequest], str]:
    """The broker's way to record the one grant an approving verdict gives (and audit it)."""

    def record(request: GrantRequest) -> str:
        grant = grants.add(
            key=request.key,
            workload=request.workload,
            action=request.action,
            target=request.target,
            params=bounded_json(dict(request.params), params_cap),
            rule=request.rule.where,
            rule_id=request.rule.identity,
            approvers=list(request.approvers),
            seconds=request.seconds,
        )
        trail.note(
            AuditRecord(
                kind="approval",
                priority=NOTICE,
                workload=request.workload,
                action=request.action,
                runs_on=request.target,
                rule=request.rule.where,
                outcome="granted",
                approver=", ".join(request.approvers),
                detail=grant.id,
                message=f"{request.workload} {request.action} -> {request.target or '-'}: "
                f"grant {grant.id} recorded ({request.rule.grant} at most; "
                f"approved by {', '.join(request.approvers)})",
            )
        )
        return grant.id

    return record
