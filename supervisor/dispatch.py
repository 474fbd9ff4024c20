"""One intent, end to end: decode, decide, ask, audit, execute, audit, reply.

`handle_intent` answers synchronously whenever it can (decode errors, denials, in-process
executors) and returns a coroutine only when it must wait (an `ask`, a process). Every
decision is audited before its reply is returned; nothing runs unless its decision was
audited; an approval runs only the exact intent it was given for.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Final

from executors import ACTIONS
from executors.base import Action, ExecContext, ExecError, IntentBase, TargetUser
from policy import Rule, Verdict, evaluate
from policy.units import parse_rate

from . import protocol
from .approvals import Broker, Resolution, bound_digest
from .audit import INFO, NOTICE, WARNING, Auditor, AuditRecord, AuditUnavailable, bounded_json
from .grants import GrantStore, intent_key
from .identity import Peer
from .protocol import ErrorCode, ProtocolError, Reply, encode_reply, error_reply
from .ratelimit import RateLimiter
from .state import DaemonState

_ACTION_OF: Final[dict[type[IntentBase], Action]] = {a.params: a for a in ACTIONS.values()}
_STDERR_IN_REPLY: Final = 4096
_REFUSALS: Final[dict[str, tuple[ErrorCode, str]]] = {
    "denied": ("approval_denied", "a human refused the request"),
    "timeout": ("approval_timeout", "nobody answered in time"),
    "cancelled": ("approval_timeout", "the request was withdrawn"),
    "unavailable": ("unavailable", "the daemon is shutting down"),
    "rate_limited": ("rate_limited", "too many requests of this workload await approval"),
}

Answer = bytes | Coroutine[Any, Any, bytes]


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated gateway connection: kernel credentials and the workload they map to."""

    peer: Peer
    workload: TargetUser


@dataclass(slots=True)
class _Intent:
    """One decoded intent and what has been decided about it so far."""

    caller: Caller
    request_id: str
    intent: IntentBase
    action: Action
    params: dict[str, Any]
    params_json: str
    verdict: Verdict | None = None
    #: Where it runs: the named target, the rule's default_target, or the workload itself.
    target: str | None = None

    def record(self, **fields: Any) -> AuditRecord:
        """An audit record pre-filled with who asked for what."""
        base: dict[str, Any] = {
            "intent_id": self.request_id,
            "workload": self.caller.workload.workload,
            "uid": self.caller.peer.uid,
            "pid": self.caller.peer.pid,
            "action": self.action.name,
            "target": self.target if self.target is not None else self.intent.target,
            "params": self.params_json,
        }
        if self.verdict is not None:
            base["decision"] = self.verdict.decision
            base["rule"] = self.verdict.rule_name
        base.update(fields)
        return AuditRecord(**base)

    def key(self) -> str:
        """The canonical identity of what would run (approvals and grants bind to it)."""
        return intent_key(
            self.caller.workload.workload,
            self.action.name,
            self.target,
            protocol.intent_params(self.intent),
        )


class Dispatcher:
    """Turns gateway request lines into reply lines."""

    def __init__(
        self, state: DaemonState, auditor: Auditor, broker: Broker, grants: GrantStore
    ) -> None:
        self.state = state
        self.auditor = auditor
        self.broker = broker
        self.grants = grants
        self.limiter = RateLimiter()

    def handle_intent(self, caller: Caller, line: bytes) -> Answer:
        """Answer one request line from a gateway."""
        try:
            request = protocol.decode_request(line)
        except ProtocolError as exc:
            self._audit_rejected(
                caller.peer, caller.workload.workload, exc.request_id, exc.code, exc.message
            )
            return encode_reply(error_reply(exc.request_id, exc.code, exc.message))
        intent = request.intent
        action = _ACTION_OF[type(intent)]
        params = protocol.intent_params(intent)
        cap = self.state.config.settings.audit.params_cap
        it = _Intent(
            caller=caller,
            request_id=request.id,
            intent=intent,
            action=action,
            params=params,
            params_json=bounded_json(params, cap),
        )
        if intent.target is not None and intent.target not in self.state.config.workloads:
            message = f"target: unknown workload {intent.target!r}"
            self._audit_rejected(
                caller.peer,
                caller.workload.workload,
                request.id,
                "invalid_params",
                message,
                action=action.name,
            )
            return encode_reply(error_reply(request.id, "invalid_params", message))
        verdict = evaluate(
            self.state.policy, caller.workload.workload, action.name, intent.target, params
        )
        it.verdict = verdict
        if verdict.decision == "deny":
            return self._deny(it, "policy_denied", self._deny_message(it))
        rule = verdict.rule
        assert rule is not None
        it.target = self._effective_target(it, rule)
        if not self.limiter.allow(rule, caller.workload.workload):
            assert rule.rate is not None
            return self._deny(
                it, "rate_limited", f"rule {rule.where} allows {rule.rate.text} per workload"
            )
        if verdict.decision == "ask":
            return self._ask_then_run(it, rule)
        if not self._license(
            it, it.record(kind="decision", priority=INFO, message=self._summary(it, "allow"))
        ):
            return self._unavailable(it, "audit trail unavailable; not executed")
        return self._execute(it)

    def _effective_target(self, it: _Intent, rule: Rule) -> str | None:
        if it.intent.target is not None:
            return it.intent.target
        if rule.default_target is not None:
            return rule.default_target
        return it.caller.workload.workload if it.action.needs_target else None

    def _deny(self, it: _Intent, code: ErrorCode, message: str) -> bytes:
        self._audit(
            it.record(
                kind="decision",
                priority=NOTICE,
                outcome=code,
                message=self._summary(it, f"deny ({code})"),
            )
        )
        return self._reply_error(it, code, message)

    def _deny_message(self, it: _Intent) -> str:
        assert it.verdict is not None
        if it.verdict.rule is None:
            return f"no rule allows {it.action.name} for workload {it.caller.workload.workload}"
        return f"denied by rule {it.verdict.rule_name}"

    # --- ask ---------------------------------------------------------------------------

    async def _ask_then_run(self, it: _Intent, rule: Rule) -> bytes:
        key = it.key()
        grant = self.grants.match(key)
        if grant is not None:
            if not self._license(
                it,
                it.record(
                    kind="decision",
                    priority=INFO,
                    outcome="granted",
                    approver=", ".join(grant.approvers),
                    detail=grant.id,
                    message=self._summary(it, f"ask: let through by grant {grant.id}"),
                ),
            ):
                return self._unavailable(it, "audit trail unavailable; not executed")
            return await self._run_now(it)
        if not self._license(
            it,
            it.record(
                kind="decision",
                priority=NOTICE,
                outcome="pending",
                message=self._summary(it, "ask (waiting for approval)"),
            ),
            serve=False,
        ):
            return self._unavailable(it, "audit trail unavailable; not asked")
        res = await self.broker.ask(
            intent_id=it.request_id,
            workload=it.caller.workload.workload,
            action=it.action.name,
            target=it.target,
            params=it.params,
            rule=rule,
        )
        if res.outcome != "approved":
            code, message = _REFUSALS[res.outcome]
            if res.outcome == "timeout":
                message = f"nobody answered within {rule.timeout:g} s"
            if res.reason:
                message += f": {res.reason}"
            return self._deny(it, code, message)
        if not self._bound(it, res):
            return self._deny(
                it, "approval_denied", "the approval does not match this intent; not executed"
            )
        if not self._license(
            it,
            it.record(
                kind="decision",
                priority=INFO,
                outcome="approved",
                approver=", ".join(res.approvers),
                pending=res.pending_id,
                message=self._summary(it, f"ask: approved by {', '.join(res.approvers)}"),
            ),
        ):
            return self._unavailable(it, "audit trail unavailable; not executed")
        if res.grant > 0:
            g = self.grants.add(
                key=res.key,
                workload=it.caller.workload.workload,
                action=it.action.name,
                target=it.target,
                params=it.params_json,
                rule=rule.where,
                approvers=list(res.approvers),
                seconds=res.grant,
            )
            self._audit(
                it.record(
                    kind="approval",
                    priority=NOTICE,
                    outcome="granted",
                    approver=", ".join(res.approvers),
                    detail=g.id,
                    message=self._summary(it, f"grant {g.id} recorded"),
                )
            )
        return await self._run_now(it)

    def _bound(self, it: _Intent, res: Resolution) -> bool:
        """Check, just before running, that the approval was for exactly this intent."""
        return secrets.compare_digest(bound_digest(res.nonce, it.key()), res.digest)

    async def _run_now(self, it: _Intent) -> bytes:
        result = self._execute(it)
        return result if isinstance(result, bytes) else await result

    # --- execution -----------------------------------------------------------------------

    def _execute(self, it: _Intent) -> Answer:
        ctx = self._context(it)
        if it.action.run_inline is not None:
            try:
                result = it.action.run_inline(it.intent, ctx)
            except ExecError as exc:
                return self._failed(it, exc)
            return self._reply_ok(it, result)
        return self._run_process(it, ctx)

    async def _run_process(self, it: _Intent, ctx: ExecContext) -> bytes:
        assert it.action.run is not None
        try:
            result = await it.action.run(it.intent, ctx)
        except ExecError as exc:
            return self._failed(it, exc)
        except Exception as exc:  # an executor bug must not take the daemon down
            return self._failed(it, ExecError(f"internal error: {type(exc).__name__}: {exc}"))
        detail = (
            bounded_json(result, self.state.config.settings.audit.params_cap)
            if it.action.audit_result
            else None
        )
        self._audit(
            it.record(
                kind="result",
                priority=INFO,
                outcome="ok",
                detail=detail,
                message=self._summary(it, "executed"),
            )
        )
        return self._reply_ok(it, result)

    def _context(self, it: _Intent) -> ExecContext:
        cfg = self.state.config
        target = cfg.workloads.get(it.target) if it.target is not None else None
        files = cfg.files.get(it.target) if it.target is not None else None
        return ExecContext(
            source=it.caller.workload.workload,
            target=target,
            settings=cfg.executors[it.action.name],
            daemon=self.state,
            files=files,
            notify=self._notify,
        )

    def _notify(self, workload: str, message: str) -> int:
        """The `notify` executor's way to the operator, at most its configured rate."""
        rate = parse_rate(self.state.config.executors["notify"].options.rate)
        if not self.limiter.take(("notify", rate.text, workload), rate):
            raise ExecError(
                f"workload {workload} may send {rate.text} notices", code="rate_limited"
            )
        return self.broker.notice(workload, message)

    def _failed(self, it: _Intent, exc: ExecError) -> bytes:
        self._audit(
            it.record(
                kind="result",
                priority=WARNING,
                outcome=exc.code,
                detail=exc.stderr[:_STDERR_IN_REPLY] or None,
                message=self._summary(it, f"failed: {exc.message}"),
            )
        )
        reply = error_reply(
            it.request_id,
            exc.code,
            exc.message,
            decision=self._decision(it),
            rule=self._rule(it),
        )
        if reply.error is not None:
            reply.error.exit_status = exc.exit_status
            reply.error.stderr = exc.stderr[:_STDERR_IN_REPLY] or None
        return encode_reply(reply)

    def _reply_ok(self, it: _Intent, result: object) -> bytes:
        return encode_reply(
            Reply(
                id=it.request_id,
                status="ok",
                decision=self._decision(it),
                rule=self._rule(it),
                result=result,
            )
        )

    def _reply_error(self, it: _Intent, code: ErrorCode, message: str) -> bytes:
        return encode_reply(
            error_reply(
                it.request_id, code, message, decision=self._decision(it), rule=self._rule(it)
            )
        )

    @staticmethod
    def _decision(it: _Intent) -> protocol.Decision | None:
        return it.verdict.decision if it.verdict is not None else None

    @staticmethod
    def _rule(it: _Intent) -> str | None:
        return it.verdict.rule_name if it.verdict is not None else None

    @staticmethod
    def _summary(it: _Intent, what: str) -> str:
        target = it.target or it.intent.target or "-"
        rule = it.verdict.rule_name if it.verdict is not None else "-"
        return (
            f"{it.caller.workload.workload} {it.action.name} -> {target}: {what} "
            f"[rule {rule}, id {it.request_id}]"
        )

    # --- auditing ------------------------------------------------------------------------

    def audit(self, record: AuditRecord) -> bool:
        """Write (or defer) a record that licenses nothing; False when it was lost."""
        try:
            self.auditor.write(record, defer=True)
        except AuditUnavailable as exc:
            print(f"clawvisor: AUDIT RECORD LOST: {exc}", file=sys.stderr, flush=True)
            return False
        return True

    _audit = audit

    def _license(self, it: _Intent, record: AuditRecord, *, serve: bool = True) -> bool:
        """Write the record that lets `it` run. Only a read-only intent, when the operator
        chose to serve those while the trail is down, may run on a deferred record."""
        defer = (
            serve
            and not it.action.mutating
            and self.state.config.settings.audit.readonly_when_unavailable == "serve"
        )
        try:
            self.auditor.write(record, defer=defer)
        except AuditUnavailable as exc:
            print(f"clawvisor: AUDIT FAILED, refusing to act: {exc}", file=sys.stderr, flush=True)
            return False
        return True

    def _unavailable(self, it: _Intent, message: str) -> bytes:
        """Refuse `it` because its record could not be written; the refusal waits to be."""
        self._audit(
            it.record(
                kind="decision",
                priority=WARNING,
                outcome="unavailable",
                message=self._summary(it, "refused: audit trail unavailable"),
            )
        )
        return self._reply_error(it, "unavailable", message)

    def _audit_rejected(
        self,
        peer: Peer,
        workload: str | None,
        request_id: str | None,
        code: ErrorCode,
        message: str,
        action: str | None = None,
    ) -> None:
        self._audit(
            AuditRecord(
                kind="rejected",
                priority=WARNING,
                intent_id=request_id,
                workload=workload,
                uid=peer.uid,
                pid=peer.pid,
                action=action,
                outcome=code,
                message=f"rejected input from uid {peer.uid} ({workload or 'unknown'}): "
                f"{code}: {message}"[:1024],
            )
        )

    def reject_connection(self, peer: Peer, code: ErrorCode, message: str) -> bytes:
        """Audit and answer a connection refused before any request (unknown uid, caps)."""
        self._audit_rejected(peer, None, None, code, message)
        return encode_reply(error_reply(None, code, message))

    def reject_frame(self, peer: Peer, workload: str | None, message: str) -> bytes:
        """Audit and answer a line that breaks framing (too long, never completed)."""
        self._audit_rejected(peer, workload, None, "bad_frame", message)
        return encode_reply(error_reply(None, "bad_frame", message))
