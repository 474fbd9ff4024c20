"""What a gateway's requests can fail with: one exception class per error code on the
wire (refusals by policy or by a human derive from `Refused`), plus the client's own
failures (a lost connection, its own timeout)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar, Final

from .common import ErrorInfo, Reply


class ClawvisorError(Exception):
    """A reply with an error: `code`, `message`, and the decision and rule when there was one."""

    code: ClassVar[str] = ""
    #: Whether sending the same request again could succeed (decided by the daemon, not
    #: by chance): false for refusals by policy or by a human.
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        decision: str | None = None,
        rule: str | None = None,
        info: ErrorInfo | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        self.decision = decision
        self.rule = rule
        self.info = info

    def __str__(self) -> str:
        where = f" (rule {self.rule})" if self.rule else ""
        return f"{self.code}: {self.message}{where}"


class Refused(ClawvisorError):
    """The policy or a human refused the request; nothing was done."""


class BadFrame(ClawvisorError):
    """The line was not UTF-8 JSON, too deep, or longer than 64 KiB."""

    code = "bad_frame"


class BadRequest(ClawvisorError):
    """Valid JSON but not a request (`id` or `intent` missing or malformed)."""

    code = "bad_request"


class Unauthorized(ClawvisorError):
    """This Linux user is not a workload clawvisor serves on this socket."""

    code = "unauthorized"


class UnknownAction(ClawvisorError):
    """No such action in clawvisor's fixed catalogue."""

    code = "unknown_action"


class InvalidParams(ClawvisorError):
    """A param is missing, unknown or invalid; the message names it."""

    code = "invalid_params"


class PolicyDenied(Refused):
    """A deny rule matched, or no rule did (default deny)."""

    code = "policy_denied"


class ApprovalDenied(Refused):
    """The policy asked a human, who said no."""

    code = "approval_denied"


class ApprovalTimeout(Refused):
    """The policy asked a human and nobody answered in time (so: no)."""

    code = "approval_timeout"


class RateLimited(Refused):
    """Too many requests or connections from this workload; later may work."""

    code = "rate_limited"
    retryable = True


class ExecutorFailed(ClawvisorError):
    """The action was allowed but failed; `exit_status` and `stderr` say how."""

    code = "executor_failed"

    @property
    def exit_status(self) -> int | None:
        return self.info.exit_status if self.info else None

    @property
    def stderr(self) -> str | None:
        return self.info.stderr if self.info else None


class Unavailable(ClawvisorError):
    """The daemon cannot carry out intents now (shutting down, audit trail down)."""

    code = "unavailable"
    retryable = True


class Cancelled(ClawvisorError):
    """The request was withdrawn (by a `cancel`, or its connection went) before it ran."""

    code = "cancelled"
    retryable = True


#: The exception class for each error code on the wire.
ERRORS: Final[Mapping[str, type[ClawvisorError]]] = MappingProxyType(
    {
        cls.code: cls
        for cls in (
            BadFrame,
            BadRequest,
            Unauthorized,
            UnknownAction,
            InvalidParams,
            PolicyDenied,
            ApprovalDenied,
            ApprovalTimeout,
            RateLimited,
            ExecutorFailed,
            Unavailable,
            Cancelled,
        )
    }
)


class ConnectionLost(ConnectionError):
    """The daemon closed the connection (or it broke); `unanswered` requests got no reply."""

    def __init__(self, message: str, unanswered: int = 0) -> None:
        super().__init__(message)
        self.unanswered = unanswered


class ClientTimeout(TimeoutError):
    """No reply within the client's own timeout (the request may still be in progress)."""


def error_for(reply: Reply) -> ClawvisorError:
    """The exception a reply with an error stands for."""
    info = reply.error or ErrorInfo(code="bad_request", message="reply without result or error")
    cls = ERRORS.get(info.code, ClawvisorError)
    return cls(
        info.message, request_id=reply.id, decision=reply.decision, rule=reply.rule, info=info
    )
