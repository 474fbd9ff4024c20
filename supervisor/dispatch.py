"""One intent, end to end: decode, decide, ask, audit, execute, audit, reply.

`handle_intent` answers synchronously whenever it can (decode errors, denials, in-process
executors) and returns a coroutine only when it must wait (an `ask`, a process). Every
decision is audited before its reply is returned; nothing runs unless its decision was
audited.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

from executors import ACTIONS
from executors.base import Action, ExecContext, ExecError, IntentBase, TargetUser
from policy import Verdict, evaluate

from . import protocol
from .approvals import Broker, Outcome
from .audit import INFO, NOTICE, WARNING, Auditor, AuditRecord, AuditUnavailable, bounded_json
from .identity import Peer
from .protocol import ErrorCode, ProtocolError, Reply, encode_reply, error_reply
from .ratelimit import RateLimiter
from .state import DaemonState

_ACTION_OF: Final[dict[type[IntentBase], Action]] = {a.params: a for a in ACTIONS.values()}
_STDERR_IN_REPLY: Final = 4096

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
    params_json: str
    verdict: Verdict | None = None

    def record(self, **fields: Any) -> AuditRecord:
        """An audit record pre-filled with who asked for what."""
        base: dict[str, Any] = {
            "intent_id": self.request_id,
            "workload": self.caller.workload.workload,
            "uid": self.caller.peer.uid,
            "pid": self.caller.peer.pid,
            "action": self.action.name,
            "target": self.intent.target,
            "params": self.params_json,
        }
        if self.verdict is not None:
            base["decision"] = self.verdict.decision
            base["rule"] = self.verdict.rule_name
        base.update(fields)
        return AuditRecord(**base)


class Dispatcher:
    """Turns request lines into reply lines for gateway and control connections."""

    def __init__(
        self,
        state: DaemonState,
        auditor: Auditor,
        broker: Broker,
        reload: Callable[[], str | None] | None = None,
    ) -> None:
        self.state = state
        self.auditor = auditor
        self.broker = broker
        self.limiter = RateLimiter()
        self._reload = reload

    # --- gateways ------------------------------------------------------------------

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
        assert verdict.rule is not None
        if not self.limiter.allow(verdict.rule, caller.workload.workload):
            assert verdict.rule.rate is not None
            return self._deny(
                it,
                "rate_limited",
                f"rule {verdict.rule.where} allows {verdict.rule.rate.text} per workload",
            )
        if verdict.decision == "ask":
            return self._ask_then_run(it)
        if not self._audit(
            it.record(kind="decision", priority=INFO, message=self._summary(it, "allow"))
        ):
            return self._reply_error(it, "unavailable", "audit trail unavailable; not executed")
        return self._execute(it)

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

    async def _ask_then_run(self, it: _Intent) -> bytes:
        assert it.verdict is not None and it.verdict.rule is not None
        rule = it.verdict.rule
        if not self._audit(
            it.record(
                kind="decision",
                priority=NOTICE,
                outcome="pending",
                message=self._summary(it, "ask (waiting for approval)"),
            )
        ):
            return self._reply_error(it, "unavailable", "audit trail unavailable; not asked")
        outcome: Outcome = await self.broker.ask(
            workload=it.caller.workload.workload,
            action=it.action.name,
            target=it.intent.target,
            params=it.params_json,
            rule=rule.where,
            timeout=rule.timeout,
        )
        if outcome == "approved":
            if not self._audit(
                it.record(
                    kind="decision",
                    priority=INFO,
                    outcome="approved",
                    message=self._summary(it, "ask: approved"),
                )
            ):
                return self._reply_error(it, "unavailable", "audit trail unavailable")
            result = self._execute(it)
            return result if isinstance(result, bytes) else await result
        code: ErrorCode = {
            "denied": "approval_denied",
            "timeout": "approval_timeout",
            "unavailable": "unavailable",
        }[outcome]  # type: ignore[assignment]
        message = {
            "approval_denied": "a human refused the request",
            "approval_timeout": f"nobody answered within {rule.timeout:g} s",
            "unavailable": "the daemon is shutting down",
        }[code]
        return self._deny(it, code, message)

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
        self._audit(
            it.record(
                kind="result", priority=INFO, outcome="ok", message=self._summary(it, "executed")
            )
        )
        return self._reply_ok(it, result)

    def _context(self, it: _Intent) -> ExecContext:
        cfg = self.state.config
        name = it.intent.target
        rule = it.verdict.rule if it.verdict is not None else None
        if name is None and rule is not None:
            name = rule.default_target
        if name is None and it.action.needs_target:
            name = it.caller.workload.workload  # no target given: the workload itself
        target = cfg.workloads.get(name) if name is not None else None
        return ExecContext(
            source=it.caller.workload.workload,
            target=target,
            settings=cfg.executors[it.action.name],
            daemon=self.state,
        )

    def _failed(self, it: _Intent, exc: ExecError) -> bytes:
        self._audit(
            it.record(
                kind="result",
                priority=WARNING,
                outcome="executor_failed",
                detail=exc.stderr[:_STDERR_IN_REPLY] or None,
                message=self._summary(it, f"failed: {exc.message}"),
            )
        )
        reply = error_reply(
            it.request_id,
            "executor_failed",
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
        target = it.intent.target or "-"
        rule = it.verdict.rule_name if it.verdict is not None else "-"
        return (
            f"{it.caller.workload.workload} {it.action.name} -> {target}: {what} "
            f"[rule {rule}, id {it.request_id}]"
        )

    # --- auditing --------------------------------------------------------------------

    def _audit(self, record: AuditRecord) -> bool:
        """Write one record; False (and a loud message) when it could not be written."""
        try:
            self.auditor.write(record)
        except AuditUnavailable as exc:
            print(f"clawvisor: AUDIT FAILED, refusing to act: {exc}", file=sys.stderr, flush=True)
            return False
        return True

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

    # --- operators -------------------------------------------------------------------

    def handle_control(self, peer: Peer, line: bytes) -> Answer:
        """Answer one request line on the control socket."""
        try:
            op = protocol.decode_control(line)
        except ProtocolError as exc:
            self._audit_rejected(peer, None, exc.request_id, exc.code, exc.message)
            return encode_reply(error_reply(exc.request_id, exc.code, exc.message))
        if isinstance(op, protocol.ReloadOp):
            return self._control_reload(peer, op)
        status = ACTIONS["status"]
        assert status.run_inline is not None
        ctx = ExecContext(
            source="@operator",
            target=None,
            settings=self.state.config.executors["status"],
            daemon=self.state,
        )
        result = status.run_inline(status.params(), ctx)
        return encode_reply(Reply(id=op.id, status="ok", result=result))

    def _control_reload(self, peer: Peer, op: protocol.ReloadOp) -> bytes:
        if self._reload is None:
            return encode_reply(error_reply(op.id, "unavailable", "reload is not available"))
        error = self._reload()
        if error is not None:
            return encode_reply(
                error_reply(
                    op.id, "unavailable", f"reload refused, previous policy stays in force: {error}"
                )
            )
        p = self.state.policy
        return encode_reply(
            Reply(
                id=op.id,
                status="ok",
                result=protocol.ReloadResult(
                    files=list(p.files),
                    rules=len(p.rules),
                    workloads=list(self.state.config.workload_names),
                ),
            )
        )
