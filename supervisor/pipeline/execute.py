"""Running an intent's executor: in process (pure, read-only actions, answered with the
one record that licenses and ends them) or as a process, with its result audited; and
the context every executor gets (kept per config in force, never built per request)."""

from __future__ import annotations

import asyncio
from typing import Final

import msgspec

from executors.base import Action, ExecContext, ExecError, ResultBase
from executors.status import OPERATOR
from policy.quantities import parse_rate

from ..approvals.broker import Broker
from ..audit import WARNING, bounded_json
from ..ratelimit import RateLimiter
from ..state import DaemonState
from .case import Case
from .ledger import Ledger
from .outcome import Answer, Outcome
from .running import Running

_STDERR_IN_REPLY: Final = 4096
#: Executor contexts kept per config (actions x sources x targets: small on real boxes).
_CONTEXTS_MAX: Final = 4096


class Execution:
    """Runs allowed intents' executors and ends each intent with its result."""

    def __init__(
        self, state: DaemonState, ledger: Ledger, limiter: RateLimiter, broker: Broker
    ) -> None:
        self.state = state
        self.ledger = ledger
        self.limiter = limiter
        self.broker = broker
        #: Executions in flight, on disk (None: not recorded, as in-process tests).
        self.running: Running | None = None
        self._contexts_of: object = None
        self._contexts: dict[tuple[str, str, str | None], ExecContext] = {}

    def answer_inline(self, it: Case) -> Outcome:
        """A pure, read-only, in-process action: its result is computed first and
        released only with the one record that licenses and ends it."""
        assert it.action.run_inline is not None
        try:
            result = it.action.run_inline(it.intent, self.context(it.action, it))
        except ExecError as exc:
            if not self.ledger.license(it, it.record(message=it.summary("allow"))):
                return self.ledger.unlicensed(it, "not executed")
            return self._failed(it, exc)
        rec = it.record(outcome="ok", final=1, message=it.summary("allow, answered"))
        if not self.ledger.license(it, rec):
            return self.ledger.unlicensed(it, "not answered")
        it.ended = True
        return it.outcome(result=result)

    def execute(self, it: Case) -> Answer:
        if it.job is not None:
            if it.job.reason is not None:  # withdrawn before it could start
                return self.ledger.end(
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

    async def run(self, it: Case) -> Outcome:
        answer = self.execute(it)
        return answer if isinstance(answer, Outcome) else await answer

    async def _run_process(self, it: Case, ctx: ExecContext) -> Outcome:
        assert it.action.run is not None
        if self.running is not None:
            try:
                await self.running.begin(it)
            except OSError as exc:
                return self.ledger.end(
                    it,
                    "unavailable",
                    f"the state directory cannot record the run ({exc.strerror or exc}); "
                    "not started",
                    what="refused: state directory unavailable",
                )
        try:
            result = await it.action.run(it.intent, ctx)
        except ExecError as exc:
            return self._failed(it, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an executor bug must not take the daemon down
            return self._failed(it, ExecError(f"internal error: {type(exc).__name__}: {exc}"))
        finally:
            # Only scheduled here: the file changes after this step, whose outcome record
            # (written below, above, or by the caller on cancellation) comes first.
            if self.running is not None:
                self.running.end(it)
        return self._done(it, result)

    def _done(self, it: Case, result: ResultBase) -> Outcome:
        detail = None
        what = "executed"
        if it.action.audit_result:
            cap = self.state.config.settings.audit.params_cap
            full = msgspec.json.encode(result)
            detail = bounded_json(result, cap)
            if len(full) > cap:  # every file's hash is in the trail, however many
                parts = self.ledger.note_parts(it, "result", full)
                what = f"executed (its result whole in the {parts} records before this)"
        self.ledger.note_end(
            it,
            it.record(kind="result", outcome="ok", detail=detail, message=it.summary(what)),
        )
        return it.outcome(result=result)

    def _failed(self, it: Case, exc: ExecError) -> Outcome:
        stderr = exc.stderr[:_STDERR_IN_REPLY] or None
        self.ledger.note_end(
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

    def context(self, action: Action, it: Case | None = None) -> ExecContext:
        """What an executor gets besides its params: for an intent, or for an operator
        (no intent: the daemon's own view, as `status` on control.sock shows it)."""
        cfg = self.state.config
        where = it.runs_on if it is not None else None
        source = it.caller.account.workload if it is not None else OPERATOR
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

    def over_notice_rate(self, workload: str) -> str | None:
        """Why `workload` may not send a `notify` now (its configured rate), or None; it
        is taken here, before the intent is licensed, so a refusal is a deny."""
        rate = parse_rate(self.state.config.executors["notify"].options.rate)
        if not self.limiter.take(("notify:" + rate.text, workload), rate):
            return f"workload {workload} may send {rate.text} notices"
        return None

    def _notify(self, workload: str, message: str) -> int:
        """The `notify` executor's way to the operator's approval agents."""
        return self.broker.notice(workload, message)
