"""Deciding, and one intent end to end, typed: a decoded `Request` in, exactly one `Outcome` out.

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
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Final

import msgspec

from executors import ACTIONS
from executors.base import Action, ExecError, IntentBase
from policy import evaluate, runs_on

from ..approvals.broker import Broker
from ..approvals.grants import GrantStore
from ..audit import NOTICE, WARNING, Auditor
from ..ratelimit import RateLimiter
from ..state import DaemonState
from ..wire.common import ErrorCode
from ..wire.intents import Request
from .ask import Asking
from .case import Case
from .execute import Execution
from .ledger import Ledger
from .outcome import Answer, Caller, Job, Outcome

_ACTION_OF: Final[dict[type[IntentBase], Action]] = {a.params: a for a in ACTIONS.values()}


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
        self.ledger = Ledger(state, trail)
        self.execution = Execution(state, self.ledger, self.limiter, broker)
        self.asking = Asking(state, self.ledger, broker, grants, self.execution)
        #: (intent, code) -> True when this refusal is over its workload's budget and is
        #: counted into an aggregate record instead (set by the daemon).
        self.count_denial: Callable[[Case, str], bool] | None = None

    def context(self, action: Action) -> Any:
        """The executor context an operator's request gets (control.sock's `status`)."""
        return self.execution.context(action)

    def submit(self, caller: Caller, request: Request, job: Job | None = None) -> Answer:
        """Take one request from `caller`; its outcome, or a coroutine that ends in it."""
        action = _ACTION_OF[type(request.intent)]
        it = Case(caller, request, action, self.state.config.settings.audit.params_cap, job)
        try:
            answer = self._decide(it)
        except Exception as exc:  # a bug while deciding costs this intent, nothing else
            return self._internal_error(it, exc)
        if isinstance(answer, Outcome):
            return answer
        return self._guarded(it, answer)

    async def _guarded(self, it: Case, work: Coroutine[Any, Any, Outcome]) -> Outcome:
        try:
            return await work
        except asyncio.CancelledError:
            # Only the daemon's own shutdown cancels intents (after its drain deadline):
            # a cancelled task is not an outcome, so write one.
            return self.ledger.end(
                it,
                "unavailable",
                "interrupted: the daemon stopped before it finished",
                priority=WARNING,
                what="interrupted by shutdown",
            )
        except Exception as exc:
            return self._internal_error(it, exc)

    def _internal_error(self, it: Case, exc: Exception) -> Outcome:
        print(
            f"clawvisor: internal error handling {it.request_id}: {exc!r}",
            file=sys.stderr,
            flush=True,
        )
        return self.ledger.end(
            it,
            "unavailable",
            f"internal error while handling the request ({type(exc).__name__}); nothing "
            "more was done",
            priority=WARNING,
            what=f"internal error: {type(exc).__name__}: {exc}"[:300],
        )

    def _decide(self, it: Case) -> Answer:
        config = self.state.config
        source = it.caller.account.workload
        target = it.intent.target
        if self.draining:
            return self.ledger.end(
                it, "unavailable", "the daemon is stopping", what="refused: stopping"
            )
        policy = self.state.policy
        unknown = target is not None and target not in config.workloads
        # An unknown target is decided like any other first: a workload the policy
        # would refuse learns nothing about which workload names exist.
        ruling = evaluate(policy, source, it.action.name, target, it.params)
        it.ruling = ruling
        if ruling.decision == "deny":
            return self._deny(it, "policy_denied", self._deny_message(it))
        if unknown:
            return self.ledger.end(
                it,
                "invalid_params",
                f"target: unknown workload {target!r}",
                what="refused: unknown target",
                priority=NOTICE,
            )
        if it.params_overflow is not None:  # all of them in the trail, before its decision
            self.ledger.note_parts(it, "params", it.params_overflow)
        rule = ruling.rule
        assert rule is not None
        it.runs_on = runs_on(policy, rule, source, it.action.name, target)
        if not self.limiter.allow(rule, source):
            assert rule.rate is not None
            return self._deny(
                it, "rate_limited", f"rule {rule.where} allows {rule.rate.text} per workload"
            )
        if it.action.name == "notify":
            over = self.execution.over_notice_rate(source)
            if over is not None:
                return self._deny(it, "rate_limited", over)
        if ruling.decision == "ask":
            refused = self._cannot_run(it)
            return refused if refused is not None else self.asking.ask_then_run(it, rule)
        return self._allow(it)

    def _cannot_run(self, it: Case) -> Outcome | None:
        """The refusal of an ask whose action could not run anyway (its precheck)."""
        if it.action.precheck is None:
            return None
        try:
            it.action.precheck(it.intent, self.execution.context(it.action, it))
        except ExecError as exc:
            # The details (which file is missing, where) are the operator's: they would
            # map a root-only directory for the workload. The trail has them.
            return self._deny(
                it,
                exc.code,
                f"{it.action.name} cannot run as asked (see the operator's audit trail); "
                "nobody was asked",
                detail=exc.message[:300],
            )
        return None

    def _deny(self, it: Case, code: ErrorCode, message: str, detail: str | None = None) -> Outcome:
        # A refusal is a deny whatever the rule said (a rate-limited allow is a deny).
        it.ended = True
        out = msgspec.structs.replace(it.outcome(code, message), decision="deny")
        if self.count_denial is not None and self.count_denial(it, code):
            # Over its workload's budget of refusals: counted in the next aggregate
            # record (ids first..last), not written one by one: refusals license nothing,
            # and a workload sending them must not be able to flush the trail.
            return out
        rec = it.record(
            decision="deny",
            priority=NOTICE,
            outcome=code,
            final=1,
            detail=detail,
            message=it.summary(f"deny ({code})"),
        )
        self.trail.note(rec)
        return out

    def _deny_message(self, it: Case) -> str:
        assert it.ruling is not None
        if it.ruling.rule is None:
            return f"no rule allows {it.action.name} for workload {it.caller.workload}"
        return f"denied by rule {it.ruling.rule_name}"

    def _allow(self, it: Case) -> Answer:
        action = it.action
        if action.run_inline is not None and not action.mutating:
            return self.execution.answer_inline(it)
        if not self.ledger.license(it, it.record(message=it.summary("allow"))):
            return self.ledger.unlicensed(it, "not executed")
        return self.execution.execute(it)
