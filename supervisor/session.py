"""One gateway connection: reply lines for request lines, and the intents in flight on it.

The edge of the pipeline: lines are decoded here into typed requests and outcomes encoded
into replies. It also keeps what the connection is owed: each intent in flight by id (an
id may not be reused while in flight), `cancel` requests, and, when the connection ends
(EOF with the peer gone, reset, kill), the withdrawal of every intent not yet started.
Started executors are not the connection's to stop.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Final

import msgspec

from .connection import Acceptance, Connection, LineHandler
from .pipeline import Caller, Job, Outcome, Pipeline
from .rejections import Rejections
from .wire.common import ProtocolError, Reply, encode_reply
from .wire.intents import (
    CancelRequest,
    CancelResult,
    CapabilitiesChanged,
    WatchRequest,
    WatchResult,
    decode_request,
)

Answer = bytes | Coroutine[Any, Any, bytes]
_CHANGED: Final = msgspec.json.encode(CapabilitiesChanged()) + b"\n"


class GatewaySession:
    """Decodes one connection's lines, submits its intents, encodes their outcomes."""

    def __init__(self, caller: Caller, pipeline: Pipeline, rejections: Rejections) -> None:
        self.caller = caller
        self.pipeline = pipeline
        self.rejections = rejections
        #: Intents in flight on this connection, by request id.
        self.jobs: dict[str, Job] = {}
        #: The gateway asked to be told when its capabilities change (`watch`).
        self.watching = False
        #: Sends an unsolicited line on this session's connection.
        self.push: Callable[[bytes], None] | None = None

    def handle(self, line: bytes) -> Answer:
        """Answer one request line."""
        try:
            request = decode_request(line)
        except ProtocolError as exc:
            return self._reject(exc.request_id, exc)
        rid = request.id
        if rid in self.jobs:  # a cancel's own id too: two replies would carry one id
            return self._reject(
                rid,
                ProtocolError(
                    "bad_request", f"request id {rid!r} is still in flight on this connection"
                ),
            )
        if isinstance(request, CancelRequest):
            return self._cancel(request)
        if isinstance(request, WatchRequest):
            self.watching = True
            return encode_reply(
                Reply(id=rid, status="ok", result=WatchResult(watching=request.watch))
            )
        job = Job(rid)
        answer = self.pipeline.submit(self.caller, request, job)
        if isinstance(answer, Outcome):
            return encode_reply(answer.reply())
        self.jobs[rid] = job
        return self._finish(rid, answer)

    async def _finish(self, rid: str, answer: Coroutine[Any, Any, Outcome]) -> bytes:
        try:
            outcome = await answer
        finally:
            self.jobs.pop(rid, None)
        return encode_reply(outcome.reply())

    def _cancel(self, request: CancelRequest) -> bytes:
        job = self.jobs.get(request.cancel)
        if job is None:
            state: Any = "unknown"
        elif job.withdraw(f"cancelled by the gateway (request {request.id})"):
            state = "withdrawn"
        else:
            state = "running"
        return encode_reply(
            Reply(
                id=request.id, status="ok", result=CancelResult(request=request.cancel, state=state)
            )
        )

    def _reject(self, request_id: str | None, exc: ProtocolError) -> bytes:
        return self.rejections.rejected(
            self.caller.peer, self.caller.workload, request_id, exc.code, exc.message
        )

    def close(self) -> None:
        """The gateway is gone: withdraw everything of its that has not started."""
        for job in list(self.jobs.values()):
            job.withdraw("the gateway disconnected")


class Gateways:
    """Every live gateway session, so that events reach those that watch."""

    def __init__(self, pipeline: Pipeline, rejections: Rejections) -> None:
        self.pipeline = pipeline
        self.rejections = rejections
        self._live: set[GatewaySession] = set()

    def acceptance(self, caller: Caller) -> Acceptance:
        """A new gateway connection's session, bound to its connection."""
        session = GatewaySession(caller, self.pipeline, self.rejections)

        def bind(conn: Connection) -> LineHandler:
            session.push = conn.push
            conn.waits_for_events = lambda: session.watching
            self._live.add(session)
            return session.handle

        def closed() -> None:
            self._live.discard(session)
            session.close()

        return Acceptance(bind=bind, workload=caller.account.workload, on_close=closed)

    def watched(self) -> set[str]:
        """The workloads some live gateway of which watches its capabilities."""
        return {s.caller.workload for s in self._live if s.watching}

    def capabilities_changed(self, changed: Callable[[str], bool]) -> int:
        """Tell each watching gateway whose workload's capabilities a reload `changed`;
        how many were told. No polling: this is the only way they learn of it. A reload
        that changed nothing of a workload's tells it nothing, so that no gateway learns
        from the timing of its events that another workload's policy moved."""
        told = 0
        verdicts: dict[str, bool] = {}
        for session in list(self._live):
            if not (session.watching and session.push is not None):
                continue
            workload = session.caller.workload
            if workload not in verdicts:
                verdicts[workload] = changed(workload)
            if verdicts[workload]:
                session.push(_CHANGED)
                told += 1
        return told
