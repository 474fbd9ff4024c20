"""What both sockets share: line size, request ids, the closed set of error codes, the
reply and its error, protocol errors, and the JSON encoder.

Requests and replies of gateways are in `wire.intents`, operator commands and agent
events in `wire.control`; this is what both speak.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

from executors.base import whole

#: Longest accepted line, not counting its terminating newline.
MAX_LINE: Final = 64 * 1024

ErrorCode = Literal[
    "bad_frame",
    "bad_request",
    "unauthorized",
    "unknown_action",
    "invalid_params",
    "policy_denied",
    "approval_denied",
    "approval_timeout",
    "rate_limited",
    "executor_failed",
    "unavailable",
    "cancelled",
]

#: What each error code means; the README's table is generated from this.
ERROR_CODES: Final[dict[str, str]] = {
    "bad_frame": "The line is not UTF-8 JSON, is nested too deeply, or is longer than 64 KiB.",
    "bad_request": "Valid JSON, but not a request: missing or malformed `id` or `intent`.",
    "unauthorized": "The peer's uid (from SO_PEERCRED) is not allowed on this socket.",
    "unknown_action": "The intent's `action` is not one clawvisor can carry out.",
    "invalid_params": "The action is known but a param is missing, unknown or invalid.",
    "policy_denied": "The policy denied the intent (a deny rule, or no rule matched).",
    "approval_denied": "The policy asked a human, who refused.",
    "approval_timeout": "The policy asked a human and nobody answered in time.",
    "rate_limited": "Too many requests or connections from this workload.",
    "executor_failed": "The action was allowed but the executor failed; see the message.",
    "unavailable": "The daemon cannot carry out the intent now (shutting down, audit down).",
    "cancelled": "The gateway withdrew the request (`cancel`) before it started; nothing ran.",
}

Decision = Literal["allow", "ask", "deny"]
ReplyStatus = Literal["ok", "denied", "error"]

#: Codes that are a refusal by policy or a human rather than a malfunction.
DENIAL_CODES: Final = frozenset(
    {"policy_denied", "approval_denied", "approval_timeout", "rate_limited"}
)

RequestId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        pattern=whole(r"[\x21-\x7e]+"),
        description="Caller-chosen id (printable ASCII, no spaces), echoed in the reply.",
    ),
]


def _doc(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class ErrorInfo(msgspec.Struct, omit_defaults=True):
    """Why a request did not produce a result (`executor_failed` adds status and stderr)."""

    code: Annotated[ErrorCode, _doc("One of a closed set; see the README's table.")]
    message: Annotated[str, _doc("What went wrong, for people.")]
    exit_status: Annotated[int | None, _doc("The executor's exit status.")] = None
    stderr: Annotated[str | None, _doc("The end of the executor's stderr.")] = None


class Reply(msgspec.Struct, omit_defaults=True):
    """The answer to one request (`id` is null only when the request had no usable id)."""

    id: Annotated[str | None, _doc("The request's id; null when it had no usable one.")]
    status: Annotated[
        ReplyStatus, _doc("ok: carried out; denied: refused by policy or a human; error.")
    ]
    decision: Annotated[Decision | None, _doc("What the policy decided, when it got that far.")] = (
        None
    )
    rule: Annotated[
        str | None, _doc("The deciding rule as file:line, or `default` (no rule matched).")
    ] = None
    result: Annotated[Any, _doc("The action's result (status ok).")] = None
    error: Annotated[ErrorInfo | None, _doc("Why there is no result.")] = None


class ProtocolError(Exception):
    """A request that cannot be decoded; carries the code, message and the id if known."""

    def __init__(self, code: ErrorCode, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.request_id = request_id


class _IdProbe(msgspec.Struct):
    id: Any = None


_id_decoder: Final = msgspec.json.Decoder(_IdProbe)
_encoder: Final = msgspec.json.Encoder()


def probe_id(line: bytes) -> str | None:
    """The line's `id` when it is a usable one (raises msgspec/Unicode errors as is)."""
    probe = _id_decoder.decode(line)
    return probe.id if usable_id(probe.id) else None


def usable_id(value: object) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= 128
        and all("\x21" <= c <= "\x7e" for c in value)
    )


def frame_message(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "JSON is nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return "line is not valid UTF-8"
    return str(exc)


def encode_reply(reply: Reply) -> bytes:
    """Encode a reply as one JSON line (with its newline)."""
    return _encoder.encode(reply) + b"\n"


def error_reply(
    request_id: str | None,
    code: ErrorCode,
    message: str,
    *,
    decision: Decision | None = None,
    rule: str | None = None,
) -> Reply:
    """A reply carrying an error; its status follows from the code."""
    status: ReplyStatus = "denied" if code in DENIAL_CODES else "error"
    return Reply(
        id=request_id,
        status=status,
        decision=decision,
        rule=rule,
        error=ErrorInfo(code=code, message=message),
    )


def encode_json(value: object) -> bytes:
    """Encode any msgspec-encodable value as compact JSON (no newline)."""
    return _encoder.encode(value)
