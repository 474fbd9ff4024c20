"""What goes in and comes out of the pipeline besides the request: who sent it (the
`Caller`), the handle its connection keeps on it (the `Job`), and how it ended (the
`Outcome`, which the gateway session encodes as the reply)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import msgspec

from executors.base import Account, ResultBase

from ..identity import Peer
from ..wire.common import DENIAL_CODES, Decision, ErrorCode, ErrorInfo, Reply, ReplyStatus


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated gateway connection: kernel credentials and the workload they map to."""

    peer: Peer
    account: Account

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


#: What `Pipeline.submit` returns: the outcome, or a coroutine that ends in one.
Answer = Outcome | Coroutine[Any, Any, Outcome]
