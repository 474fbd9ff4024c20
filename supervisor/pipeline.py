"""One intent, end to end, typed: a decoded `Request` in, exactly one `Outcome` out.

`Pipeline.submit` decides (policy, rate, grants), asks (the broker), audits and runs (the
executors). It answers at once whenever it can (refusals, in-process executors) and
returns a coroutine only when it must wait (an ask, a process). Sockets, JSON and
journald are not its business: the gateway session decodes lines into requests and
encodes outcomes into reply lines; the audit trail is handed in.

The promises it keeps:
- nothing runs unless the record that licenses it was written (`Auditor.license`);
- every accepted intent ends in exactly one record marked `final` (its outcome), whatever
  happens: refusal, failure, withdrawal, shutdown, or a bug while deciding;
- an approval runs the intent only if, when released, the policy in force still decides
  it by the very rule it was asked under;
- once its executor has started, an intent runs to completion whatever its gateway does.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from executors import ACTIONS
from executors.base import Action, ExecContext, ExecError, IntentBase, ResultBase, TargetUser
from policy import Rule, Verdict, evaluate, runs_on
from policy.units import parse_rate

from .approvals.broker import Broker
from .approvals.grants import GrantStore, intent_key
from .approvals.prompt import GrantRequest, Resolution, bound_digest
from .audit import INFO, NOTICE, WARNING, Auditor, AuditRecord, AuditUnavailable, bounded_json
from .identity import Peer
from .ratelimit import RateLimiter
from .state import DaemonState
from .wire.common import DENIAL_CODES, Decision, ErrorCode, ErrorInfo, Reply, ReplyStatus
from .wire.intents import Request, intent_params

_ACTION_OF: Final[dict[type[IntentBase], Action]] = {a.params: a for a in ACTIONS.values()}
_STDERR_IN_REPLY: Final = 4096
#: Executor contexts kept per config (actions x sources x targets: small on real boxes).
_CONTEXTS_MAX: Final = 4096
#: How an ask that did not end in an approval is answered.
_REFUSALS: Final[dict[str, tuple[ErrorCode, str]]] = {
    "denied": ("approval_denied", "a human refused the request"),
    "timeout": ("approval_timeout", "nobody answered in time"),
    "withdrawn": ("cancelled", "withdrawn before anyone approved it; nothing ran"),
    "unavailable": ("unavailable", "the daemon could not ask"),
    "rate_limited": ("rate_limited", "too many requests of this workload await approval"),
}


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated gateway connection: kernel credentials and the workload they map to."""

    peer: Peer
    account: TargetUser

    @property
    def workload(self) -> str:
        """The sending workload's name."""
        return self.account.workload


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """How one request ended: a result, or an error code saying why there is none."""

    request_id: str | None
    decision: Decision | None = None
    rule: str | None = None
    result: ResultBase | None = None
    code: ErrorCode | None = None
    message: str = ""
    exit_status: int | None = None
    stderr: str | None = None

    @property
    def status(self) -> ReplyStatus:
        """ok, denied (by policy or a human), or error."""
        if self.code is None:
            return "ok"
        return "denied" if self.code in DENIAL_CODES else "error"

    def reply(self) -> Reply:
        """The wire reply for this outcome."""
        error = None
        if self.code is not None:
            error = ErrorInfo(
                code=self.code,
                message=self.message,
                exit_status=self.exit_status,
                stderr=self.stderr,
            )
        return Reply(
            id=self.request_id,
            status=self.status,
            decision=self.decision,
            rule=self.rule,
            result=self.result,
            error=error,
        )


class Job:
    """One accepted intent as its connection holds it: it can be withdrawn until its
    executor starts, and not after."""

    __slots__ = ("_withdrawn", "reason", "request_id", "started")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.started = False
        self.reason: str | None = None
        self._withdrawn: asyncio.Future[str] | None = None

    def withdraw(self, reason: str) -> bool:
        """Ask that it not run; True when it will not (its executor had not started)."""
        if self.started:
            return False
        if self.reason is None:
            self.reason = reason
            if self._withdrawn is not None and not self._withdrawn.done():
                self._withdrawn.set_result(reason)
        return True

    def withdrawal(self) -> asyncio.Future[str]:
        """A future that resolves (with the reason) when the intent is withdrawn."""
        if self._withdrawn is None:
            self._withdrawn = asyncio.get_running_loop().create_future()
            if self.reason is not None:
                self._withdrawn.set_result(self.reason)
        return self._withdrawn


class _Intent:
    """One decoded intent and what has been decided about it so far."""

    __slots__ = (
        "action",
        "caller",
        "ended",
        "intent",
        "job",
        "params",
        "params_json",
        "request_id",
        "runs_on",
        "verdict",
    )

    def __init__(
        self, caller: Caller, request: Request, action: Action, params_cap: int, job: Job | None
    ) -> None:
        self.caller = caller
        self.request_id = request.id
        self.intent = request.intent
        self.action = action
        self.params: dict[str, Any] = intent_params(request.intent)
        self.params_json = bounded_json(self.params, params_cap)
        self.job = job
        self.verdict: Verdict | None = None
        #: Where it runs: the named target, the sender for `@self`, default_target, ...
        self.runs_on: str | None = None
        #: Its final record has been written (or attempted): never a second one.
        self.ended = False

    def record(self, **fields: Any) -> AuditRecord:
        """An audit record pre-filled with who asked for what, where it runs, and why."""
        peer = self.caller.peer
        rec = AuditRecord(
            kind="decision",
            priority=INFO,
            message="",
            intent_id=self.request_id,
            workload=self.caller.account.workload,
            uid=peer.uid,
            pid=peer.pid,
            action=self.action.name,
            target=self.intent.target,
            runs_on=self.runs_on,
            params=self.params_json,
        )
        if self.verdict is not None:
            rec.decision = self.verdict.decision
            rec.rule = self.verdict.rule_name
        for name, value in fields.items():
            setattr(rec, name, value)
        return rec

    def key(self, rule: Rule) -> str:
        """What prompts and grants bind to: this intent where it runs, and its rule."""
        return intent_key(
            self.caller.account.workload, self.action.name, self.runs_on, self.params, rule.identity
        )

    def summary(self, what: str) -> str:
        where = self.runs_on or self.intent.target or "-"
        rule = self.verdict.rule_name if self.verdict is not None else "-"
        return (
            f"{self.caller.account.workload} {self.action.name} -> {where}: {what} "
            f"[rule {rule}, id {self.request_id}]"
        )

    def outcome(
        self, code: ErrorCode | None = None, message: str = "", result: ResultBase | None = None
    ) -> Outcome:
        v = self.verdict
        return Outcome(
            request_id=self.request_id,
            decision=v.decision if v is not None else None,
            rule=v.rule_name if v is not None else None,
            result=result,
            code=code,
            message=message,
        )


Answer = Outcome | Coroutine[Any, Any, Outcome]


class Pipeline:
    """Decide, ask, audit and run typed requests from authenticated gateways."""

    def __init__(
        self, state: DaemonState, trail: Auditor, broker: Broker, grants: GrantStore
    ) -> None:
        self.state = state
        self.trail = trail
        self.broker = broker
        self.grants = grants
        self.limiter = RateLimiter()
        #: Set when the daemon stops: new intents are answered `unavailable`.
        self.draining = False
        self._contexts_of: object = None
        self._contexts: dict[tuple[str, str, str | None], ExecContext] = {}

    # --- the entry point -------------------------------------------------------------

    def submit(self, caller: Caller, request: Request, job: Job | None = None) -> Answer:
        """Take one request from `caller`; its outcome, or a coroutine that ends in it."""
        action = _ACTION_OF[type(request.intent)]
        it = _Intent(caller, request, action, self.state.config.settings.audit.params_cap, job)
        try:
            answer = self._decide(it)
        except Exception as exc:  # a bug while deciding costs this intent, nothing else
            return self._internal_error(it, exc)
        if isinstance(answer, Outcome):
            return answer
        return self._guarded(it, answer)

    async def _guarded(self, it: _Intent, work: Coroutine[Any, Any, Outcome]) -> Outcome:
        try:
            return await work
        except asyncio.CancelledError:
            # Only the daemon's own shutdown cancels intents (after its drain deadline):
            # a cancelled task is not an outcome, so write one.
            return self._end(
                it,
                "unavailable",
                "interrupted: the daemon stopped before it finished",
                priority=WARNING,
                what="interrupted by shutdown",
            )
        except Exception as exc:
            return self._internal_error(it, exc)

    def _internal_error(self, it: _Intent, exc: Exception) -> Outcome:
        print(
            f"clawvisor: internal error handling {it.request_id}: {exc!r}",
            file=sys.stderr,
            flush=True,
        )
        return self._end(
            it,
            "unavailable",
            f"internal error while handling the request ({type(exc).__name__}); nothing "
            "more was done",
            priority=WARNING,
            what=f"internal error: {type(exc).__name__}: {exc}"[:300],
        )

    # --- deciding --------------------------------------------------------------------

    def _decide(self, it: _Intent) -> Answer:
        config = self.state.config
        source = it.caller.account.workload
        target = it.intent.target
        if self.draining:
            return self._end(it, "unavailable", "the daemon is stopping", what="refused: stopping")
        if target is not None and target not in config.workloads:
            return self._end(
                it,
                "invalid_params",
                f"target: unknown workload {target!r}",
                what="refused: unknown target",
                priority=NOTICE,
            )
        policy = self.state.policy
        verdict = evaluate(policy, source, it.action.name, target, it.params)
        it.verdict = verdict
        if verdict.decision == "deny":
            return self._deny(it, "policy_denied", self._deny_message(it))
        rule = verdict.rule
        assert rule is not None
        it.runs_on = runs_on(policy, rule, source, it.action.name, target)
        if not self.limiter.allow(rule, source):
            assert rule.rate is not None
            return self._deny(
                it, "rate_limited", f"rule {rule.where} allows {rule.rate.text} per workload"
            )
        if verdict.decision == "ask":
            return self._ask_then_run(it, rule)
        return self._allow(it)

    def _deny(self, it: _Intent, code: ErrorCode, message: str) -> Outcome:
        # A refusal is a deny whatever the rule said (a rate-limited allow is a deny).
        rec = it.record(
            decision="deny",
            priority=NOTICE,
            outcome=code,
            final=1,
            message=it.summary(f"deny ({code})"),
        )
        it.ended = True
        self.trail.note(rec)
        return msgspec.structs.replace(it.outcome(code, message), decision="deny")

    def _deny_message(self, it: _Intent) -> str:
        assert it.verdict is not None
        if it.verdict.rule is None:
            return f"no rule allows {it.action.name} for workload {it.caller.workload}"
        return f"denied by rule {it.verdict.rule_name}"

    def _allow(self, it: _Intent) -> Answer:
        action = it.action
        if action.run_inline is not None and not action.mutating:
            return self._answer_inline(it)
        if not self._license(it, it.record(message=it.summary("allow"))):
            return self._unlicensed(it, "not executed")
        return self._execute(it)

    # --- asking ----------------------------------------------------------------------

    async def _ask_then_run(self, it: _Intent, rule: Rule) -> Outcome:
        key = it.key(rule)
        grant = self.grants.match(key)
        if grant is not None:
            rec = it.record(
                outcome="granted",
                approver=", ".join(grant.approvers),
                detail=grant.id,
                message=it.summary(f"ask: let through by grant {grant.id}"),
            )
            if not self._license(it, rec):
                return self._unlicensed(it, "not executed")
            return await self._run(it)
        pending = it.record(
            priority=NOTICE, outcome="pending", message=it.summary("ask (waiting for approval)")
        )
        if not self._license(it, pending, serve=False):
            return self._unlicensed(it, "nobody was asked")
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
            return self._end(
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
        if not self._license(it, rec):
            return self._unlicensed(it, "not executed")
        return await self._run(it)

    def _refused(self, it: _Intent, rule: Rule, res: Resolution) -> Outcome:
        code, message = _REFUSALS[res.outcome]
        if res.outcome == "timeout":
            message = f"nobody answered within {rule.timeout:g} s"
        if res.reason:
            message += f": {res.reason}"
        return self._end(
            it,
            code,
            message,
            priority=NOTICE,
            what=f"refused ({res.outcome})",
            approver=", ".join(res.approvers) or None,
            pending=res.pending_id,
        )

    def _still_decided_by(self, it: _Intent, rule: Rule, res: Resolution) -> str | None:
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

    # --- running ---------------------------------------------------------------------

    def _answer_inline(self, it: _Intent) -> Outcome:
        """A pure, read-only, in-process action: its result is computed first and
        released only with the one record that licenses and ends it."""
        assert it.action.run_inline is not None
        try:
            result = it.action.run_inline(it.intent, self.context(it.action, it))
        except ExecError as exc:
            if not self._license(it, it.record(message=it.summary("allow"))):
                return self._unlicensed(it, "not executed")
            return self._failed(it, exc)
        rec = it.record(outcome="ok", final=1, message=it.summary("allow, answered"))
        if not self._license(it, rec):
            return self._unlicensed(it, "not answered")
        it.ended = True
        return it.outcome(result=result)

    def _execute(self, it: _Intent) -> Answer:
        if it.job is not None:
            if it.job.reason is not None:  # withdrawn before it could start
                return self._end(
                    it, "cancelled", f"withdrawn ({it.job.reason}); nothing ran", what="withdrawn"
                )
            it.job.started = True
        action = it.action
        ctx = self.context(action, it)
        if action.run_inline is not None:
            try:
                result = action.run_inline(it.intent, ctx)
            except ExecError as exc:
                return self._failed(it, exc)
            return self._done(it, result)
        return self._run_process(it, ctx)

    async def _run(self, it: _Intent) -> Outcome:
        answer = self._execute(it)
        return answer if isinstance(answer, Outcome) else await answer

    async def _run_process(self, it: _Intent, ctx: ExecContext) -> Outcome:
        assert it.action.run is not None
        try:
            result = await it.action.run(it.intent, ctx)
        except ExecError as exc:
            return self._failed(it, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an executor bug must not take the daemon down
            return self._failed(it, ExecError(f"internal error: {type(exc).__name__}: {exc}"))
        return self._done(it, result)

    def _done(self, it: _Intent, result: ResultBase) -> Outcome:
        detail = (
            bounded_json(result, self.state.config.settings.audit.params_cap)
            if it.action.audit_result
            else None
        )
        self._note_end(
            it,
            it.record(kind="result", outcome="ok", detail=detail, message=it.summary("executed")),
        )
        return it.outcome(result=result)

    def _failed(self, it: _Intent, exc: ExecError) -> Outcome:
        stderr = exc.stderr[:_STDERR_IN_REPLY] or None
        self._note_end(
            it,
            it.record(
                kind="result",
                priority=WARNING,
                outcome=exc.code,
                detail=stderr,
                message=it.summary(f"failed: {exc.message}"),
            ),
        )
        out = it.outcome(exc.code, exc.message)
        return msgspec.structs.replace(out, exit_status=exc.exit_status, stderr=stderr)

    def context(self, action: Action, it: _Intent | None = None) -> ExecContext:
        """What an executor gets besides its params: for an intent, or for an operator
        (no intent: the daemon's own view, as `status` on control.sock shows it)."""
        cfg = self.state.config
        where = it.runs_on if it is not None else None
        source = it.caller.account.workload if it is not None else "@operator"
        key = (action.name, source, where)
        if self._contexts_of is not cfg:  # built per config in force, never per request
            self._contexts_of, self._contexts = cfg, {}
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = ExecContext(
                source=source,
                target=cfg.workloads.get(where) if where is not None else None,
                settings=cfg.executors[action.name],
                daemon=self.state,
                files=cfg.files.get(where) if where is not None else None,
                notify=self._notify,
            )
            if len(self._contexts) < _CONTEXTS_MAX:
                self._contexts[key] = ctx
        return ctx

    def _notify(self, workload: str, message: str) -> int:
        """The `notify` executor's way to the operator, at most its configured rate."""
        rate = parse_rate(self.state.config.executors["notify"].options.rate)
        if not self.limiter.take(("notify:" + rate.text, workload), rate):
            raise ExecError(
                f"workload {workload} may send {rate.text} notices", code="rate_limited"
            )
        return self.broker.notice(workload, message)

    # --- auditing ----------------------------------------------------------------------

    def _license(self, it: _Intent, record: AuditRecord, *, serve: bool = True) -> bool:
        """Write the record that lets `it` go on. Only a read-only intent, when the
        operator chose to serve those while the trail is down, may go on a held record."""
        if (
            serve
            and not it.action.mutating
            and self.state.config.settings.audit.readonly_when_unavailable == "serve"
        ):
            return self.trail.note(record)
        try:
            self.trail.license(record)
        except AuditUnavailable as exc:
            print(f"clawvisor: AUDIT FAILED, refusing to act: {exc}", file=sys.stderr, flush=True)
            return False
        return True

    def _unlicensed(self, it: _Intent, what: str) -> Outcome:
        """Refuse `it` because its record could not be written; the refusal waits to be."""
        return self._end(
            it,
            "unavailable",
            f"audit trail unavailable; {what}",
            priority=WARNING,
            what="refused: audit trail unavailable",
        )

    def _note_end(self, it: _Intent, record: AuditRecord) -> None:
        if it.ended:
            return
        it.ended = True
        record.final = 1
        self.trail.note(record)

    def _end(
        self,
        it: _Intent,
        code: ErrorCode,
        message: str,
        *,
        what: str,
        priority: int = WARNING,
        **fields: Any,
    ) -> Outcome:
        """End `it` with an error outcome: its final record (if none yet) and its reply."""
        self._note_end(
            it,
            it.record(priority=priority, outcome=code, message=it.summary(what), **fields),
        )
        return it.outcome(code, message)


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
