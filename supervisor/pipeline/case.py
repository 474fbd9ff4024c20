"""One accepted intent and what has been decided about it so far: its action and params,
its ruling, where it runs, and the audit records and outcome it is described by."""

from __future__ import annotations

from typing import Any

import msgspec

from executors.base import Action, ResultBase
from policy import Rule, Ruling

from ..approvals.grants import intent_key
from ..audit import INFO, AuditRecord, bounded_json
from ..wire.common import ErrorCode
from ..wire.intents import Request, intent_params
from .outcome import Caller, Job, Outcome

_encoder = msgspec.json.Encoder()


class Case:
    """One accepted intent and what has been decided about it so far."""

    __slots__ = (
        "action",
        "caller",
        "ended",
        "intent",
        "job",
        "params",
        "params_json",
        "params_overflow",
        "request_id",
        "ruling",
        "runs_on",
    )

    def __init__(
        self, caller: Caller, request: Request, action: Action, params_cap: int, job: Job | None
    ) -> None:
        self.caller = caller
        self.request_id = request.id
        self.intent = request.intent
        self.action = action
        self.params: dict[str, Any] = intent_params(request.intent)
        full = _encoder.encode(self.params)
        #: The params as records carry them (cut at the cap) and, when cut, in full.
        self.params_json = bounded_json(self.params, params_cap)
        self.params_overflow: bytes | None = full if len(full) > params_cap else None
        self.job = job
        self.ruling: Ruling | None = None
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
        if self.ruling is not None:
            rec.decision = self.ruling.decision
            rec.rule = self.ruling.rule_name
        for name, value in fields.items():
            setattr(rec, name, value)
        if rec.outcome == "rate_limited":  # refused, whatever the rule said: a deny
            rec.decision = "deny"
        return rec

    def key(self, rule: Rule) -> str:
        """What prompts and grants bind to: this intent where it runs, and its rule."""
        return intent_key(
            self.caller.account.workload, self.action.name, self.runs_on, self.params, rule.identity
        )

    def summary(self, what: str) -> str:
        where = self.runs_on or self.intent.target or "-"
        rule = self.ruling.rule_name if self.ruling is not None else "-"
        return (
            f"{self.caller.account.workload} {self.action.name} -> {where}: {what} "
            f"[rule {rule}, id {self.request_id}]"
        )

    def outcome(
        self, code: ErrorCode | None = None, message: str = "", result: ResultBase | None = None
    ) -> Outcome:
        v = self.ruling
        decision = v.decision if v is not None else None
        return Outcome(
            request_id=self.request_id,
            decision="deny" if code == "rate_limited" else decision,
            rule=v.rule_name if v is not None else None,
            result=result,
            code=code,
            message=message,
        )
