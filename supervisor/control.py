"""The control socket's operator and agent commands: status, reload, approvals, grants.

Who may connect is decided by the kernel's view of the peer (root, or a member of the
operators' group); what an agent says about the human who pressed a button is trusted
only from the Telegram agent's own user, and only as that agent.
"""

from __future__ import annotations

import functools
import pwd
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from executors import ACTIONS
from policy.quantities import parse_grant

from .approvals.broker import Broker
from .approvals.grants import Grant, GrantStore
from .audit import WARNING, AuditRecord
from .connection import Connection
from .identity import Peer
from .monitors.manager import Monitors, ViewerFilter
from .pipeline import Pipeline
from .responses import Responder, ResponseError
from .state import DaemonState
from .wire import control
from .wire.common import ErrorCode, ProtocolError, Reply, encode_reply, error_reply
from .wire.control import Agent, GrantList, GrantView, PendingList


@functools.lru_cache(maxsize=64)
def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


@dataclass(frozen=True, slots=True)
class ControlServices:
    """What operator commands act on."""

    state: DaemonState
    broker: Broker
    grants: GrantStore
    audit: Callable[[AuditRecord], bool]
    reload: Callable[[], str | None]
    telegram_uid: Callable[[], int | None]
    pipeline: Pipeline
    monitors: Monitors | None = None
    responder: Responder | None = None


def grant_view(g: Grant) -> GrantView:
    """A grant as the control socket shows it."""
    return GrantView(
        id=g.id,
        workload=g.workload,
        action=g.action,
        target=g.target,
        params=g.params,
        rule=g.rule,
        approvers=g.approvers,
        created=g.created,
        expires=g.expires,
    )


class OperatorSession:
    """One operator connection; it becomes an approval agent when it subscribes."""

    def __init__(self, peer: Peer, conn: Connection, services: ControlServices) -> None:
        self.peer = peer
        self.conn = conn
        self.services = services
        self.agent: Agent = "cli"
        self.subscribed = False

    def push(self, data: bytes) -> None:
        self.conn.push(data)

    def close(self) -> None:
        """The connection ended: stop sending it events."""
        if self.subscribed:
            self.services.broker.unsubscribe(self)
        if self.services.monitors is not None:
            self.services.monitors.remove_viewer(self)

    def handle(self, line: bytes) -> bytes | Coroutine[Any, Any, bytes]:
        """Answer one command line."""
        try:
            op = control.decode_control(line)
        except ProtocolError as exc:
            return encode_reply(error_reply(exc.request_id, exc.code, exc.message))
        s = self.services
        match op:
            case control.StatusOp():
                return self._ok(op.id, self._status())
            case control.ReloadOp():
                return self._reload(op)
            case control.PolicySourceOp():
                files = [control.PolicyFile(name=n, text=t) for n, t in s.state.policy.sources]
                tags = {n: sorted(t) for n, t in s.state.policy.workloads.items()}
                return self._ok(op.id, control.PolicySource(files=files, workloads=tags))
            case control.SubscribeOp():
                self.agent = op.agent
                self.subscribed = True
                return self._ok(op.id, PendingList(pending=s.broker.subscribe(self)))
            case control.PendingOp():
                return self._ok(op.id, PendingList(pending=s.broker.pending))
            case control.ShowOp():
                view = s.broker.show(op.request)
                if view is None:
                    return self._error(op.id, "invalid_params", f"{op.request} is not pending")
                return self._ok(op.id, PendingList(pending=[view]))
            case control.VerdictOp():
                return self._verdict(op)
            case control.GrantsOp():
                return self._ok(op.id, GrantList(grants=[grant_view(g) for g in s.grants.list()]))
            case control.RevokeOp():
                return self._revoke(op)
            case control.MonitorOp():
                if s.monitors is None:
                    return self._error(op.id, "unavailable", "the monitors are turned off")
                s.monitors.add_viewer(
                    self,
                    ViewerFilter(
                        workload=op.workload,
                        kinds=frozenset(op.kinds),
                        min_severity=op.min_severity,
                        alerts_only=op.alerts_only,
                    ),
                    self.push,
                )
                return self._ok(op.id, None)
            case control.RespondOp():
                if s.responder is None:
                    return self._error(op.id, "unavailable", "the monitors are turned off")
                # The web console (subscribed as `web`) acts for its operator, by name.
                who = (
                    f"web:{_user_name(self.peer.uid)}"
                    if self.agent == "web"
                    else f"uid:{self.peer.uid}"
                )
                try:
                    result = s.responder.operator(op.response, op.workload, who)
                except ResponseError as exc:
                    return self._error(op.id, "executor_failed", str(exc))
                return self._ok(op.id, control.RespondResult(result=result))
            case control.ReportOp():
                s.audit(
                    AuditRecord(
                        kind="approval",
                        priority=WARNING,
                        outcome=op.what,
                        approver=f"{op.agent} uid:{self.peer.uid}",
                        detail=op.detail,
                        message=f"{op.agent} agent reports {op.what}: {op.detail}",
                    )
                )
                return self._ok(op.id, None)
        raise AssertionError(f"unhandled control op {op!r}")  # pragma: no cover

    def _status(self) -> object:
        status = ACTIONS["status"]
        assert status.run_inline is not None
        return status.run_inline(status.params(), self.services.pipeline.context(status))

    def _reload(self, op: control.ReloadOp) -> bytes:
        error = self.services.reload()
        if error is not None:
            return self._error(
                op.id, "unavailable", f"reload refused, previous policy stays in force: {error}"
            )
        st = self.services.state
        return self._ok(
            op.id,
            control.ReloadResult(
                files=list(st.policy.files),
                rules=len(st.policy.rules),
                workloads=list(st.config.workload_names),
            ),
        )

    def principal(self, agent: Agent, detail: str | None) -> str | None:
        """Who answers, for quorum and the audit trail; None when the claim is refused."""
        if agent == "telegram":
            tg_uid = self.services.telegram_uid()
            if tg_uid is None or self.peer.uid != tg_uid or not detail:
                return None
            return f"telegram:{detail}"
        # One person is one voter, whichever agent they answer through (quorum counts
        # people: the same uid through the console and the CLI is one approval).
        return f"uid:{self.peer.uid}"

    def _verdict(self, op: control.VerdictOp) -> bytes:
        who = self.principal(op.agent, op.detail)
        if who is None:
            return self._error(
                op.id,
                "unauthorized",
                "only the Telegram agent's user may answer as telegram, "
                "naming the Telegram user who pressed",
            )
        try:
            grant = parse_grant(op.grant)
        except ValueError as exc:
            return self._error(op.id, "invalid_params", str(exc))
        if not op.allow:
            grant = 0.0
        taken = self.services.broker.verdict(
            pending_id=op.request,
            digest=op.digest,
            allow=op.allow,
            agent=op.agent,
            principal=who,
            grant=grant,
            reason=op.reason,
            release=op.release,
            # The console's operator by name (the user its process runs as).
            label=f"web:{_user_name(self.peer.uid)}" if op.agent == "web" else None,
        )
        if not taken.accepted:
            return self._error(op.id, "invalid_params", taken.message)
        return self._ok(
            op.id,
            control.VerdictResult(
                request=op.request,
                decided=taken.decided,
                votes=taken.votes,
                quorum=taken.quorum,
                released=taken.released,
                still_waiting=taken.still_waiting,
            ),
        )

    async def _revoke(self, op: control.RevokeOp) -> bytes:
        gone = self.services.grants.revoke(op.grant)
        if gone is None:
            return self._error(op.id, "invalid_params", f"no grant {op.grant}")
        try:
            # Answered only once it is on disk: a restart must not bring it back.
            await self.services.grants.persisted()
        except OSError as exc:
            return self._error(
                op.id,
                "unavailable",
                f"grant {gone.id} no longer lets anything through, but the grants file "
                f"could not be saved ({exc}): it would come back after a restart",
            )
        self.services.audit(
            AuditRecord(
                kind="approval",
                priority=WARNING,
                outcome="revoked",
                workload=gone.workload,
                action=gone.action,
                target=gone.target,
                rule=gone.rule,
                approver=f"{self.agent} uid:{self.peer.uid}",
                message=f"grant {gone.id} revoked by uid {self.peer.uid}",
            )
        )
        return self._ok(op.id, GrantList(grants=[grant_view(gone)]))

    @staticmethod
    def _ok(rid: str, result: object) -> bytes:
        return encode_reply(Reply(id=rid, status="ok", result=result))

    @staticmethod
    def _error(rid: str, code: ErrorCode, message: str) -> bytes:
        return encode_reply(error_reply(rid, code, message))
