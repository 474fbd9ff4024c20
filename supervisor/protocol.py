"""The wire protocol: newline-delimited JSON, one object per line, at most 64 KiB a line.

This module is the one source of truth for what gateways and operators may send and
what they get back. Requests::

    {"id": "r1", "intent": {"action": "open-url", "target": "social", "url": "https://..."}}

Replies::

    {"id": "r1", "status": "ok", "decision": "allow", "rule": "policy.d/30.toml:12",
     "result": {"action": "open-url", ...}}
    {"id": "r2", "status": "denied", "decision": "deny", "rule": "default",
     "error": {"code": "policy_denied", "message": "..."}}

The intent is a msgspec tagged union on `action`; unknown actions and unknown fields are
rejected. Decoding classifies every failure into one closed set of error codes.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

import msgspec

from executors import (
    ACTIONS,
    capabilities,
    egress_allow,
    install_app,
    notify,
    open_url,
    run_ops,
    search,
    status,
    sync_out,
    workload_control,
)
from executors.base import IntentBase, ResultBase, whole

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

#: Every intent the daemon understands, tagged on `action`.
Intent = (
    status.Params
    | open_url.Params
    | search.Params
    | install_app.Params
    | egress_allow.Params
    | sync_out.Params
    | workload_control.StartParams
    | workload_control.StopParams
    | workload_control.RestartParams
    | notify.Params
    | run_ops.Params
    | capabilities.Params
)
#: Every executor result, tagged on `action`.
Result = (
    status.Result
    | open_url.Result
    | search.Result
    | install_app.Result
    | egress_allow.Result
    | sync_out.Result
    | workload_control.Result
    | notify.Result
    | run_ops.Result
    | capabilities.Result
)


class Request(msgspec.Struct, forbid_unknown_fields=True):
    """One gateway request: an id of the caller's choosing and one intent.

    An id may not be reused while the request it named is still in flight on the same
    connection (`bad_request`).
    """

    id: RequestId
    intent: Annotated[
        Intent,
        msgspec.Meta(
            description="What to do: `action` names one of the fixed actions, `target` the "
            "workload to act on; the action's own params beside them."
        ),
    ]


class CancelRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Withdraw a request still in flight on this connection: a pending ask is withdrawn
    from every approval agent and an intent not yet started never starts. An executor
    that has started runs to completion (its result is audited); the reply says which."""

    id: RequestId
    cancel: Annotated[RequestId, msgspec.Meta(description="The id of the request to withdraw.")]


class CancelResult(ResultBase, tag="cancel", frozen=True):
    """What a `cancel` did to the request it named."""

    request: str
    #: withdrawn: it will not run (its own reply says `cancelled`); running: too late, it
    #: runs to completion; unknown: no request with that id is in flight here.
    state: Literal["withdrawn", "running", "unknown"]


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


class IntentReply(Reply):
    """The answer to one request: the action's typed `result`, or an `error` saying why not.

    `id` is null only when the request had no usable id. (The daemon builds `Reply`;
    this is the same JSON, decoded with the result typed per action.)
    """

    result: Annotated[
        Result | CancelResult | None, _doc("The action's result, or a cancel's (status ok).")
    ] = None


class ProtocolError(Exception):
    """A request that cannot be decoded; carries the code, message and the id if known."""

    def __init__(self, code: ErrorCode, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.request_id = request_id


# --- control socket ---------------------------------------------------------------


class ControlBase(msgspec.Struct, tag_field="op", forbid_unknown_fields=True, kw_only=True):
    """Base of every operator command on control.sock (flat: `{"id":..,"op":..}`)."""

    id: RequestId


class StatusOp(ControlBase, tag="status"):
    """The daemon's status, as the `status` action reports it."""


class ReloadOp(ControlBase, tag="reload"):
    """Re-read config and policy; swapped in whole, or refused with the old one kept."""


Agent = Literal["desktop", "telegram", "cli"]
ShortText = Annotated[str, msgspec.Meta(max_length=256)]
PendingId = Annotated[str, msgspec.Meta(pattern=whole(r"p-[0-9a-f]{10}"))]
GrantId = Annotated[str, msgspec.Meta(pattern=whole(r"g-[0-9a-f]{10}"))]
Digest = Annotated[str, msgspec.Meta(pattern=whole(r"[0-9a-f]{64}"))]
GrantSpec = Annotated[
    str,
    msgspec.Meta(
        pattern=whole(r"once|always|\d{1,6}\s*[a-z]{1,7}"),
        description="once, always, or a duration such as 30m",
    ),
]


class SubscribeOp(ControlBase, tag="subscribe"):
    """Become an approval agent: get the pending requests now and each new one as an event."""

    agent: Agent


class PendingOp(ControlBase, tag="pending"):
    """List the pending requests."""


class ShowOp(ControlBase, tag="show"):
    """One pending request with every value in full (made safe to show)."""

    request: PendingId


class VerdictOp(ControlBase, tag="verdict"):
    """Allow or deny one pending request, as shown: `digest` binds it to that exact intent.

    An approval releases `release` of the identical intents waiting behind the prompt
    (oldest first): 1 unless the human chose "allow all N" for the N shown. A deny refuses
    every one of them.
    """

    request: PendingId
    digest: Digest
    allow: bool
    agent: Agent = "cli"
    grant: GrantSpec = "once"
    release: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1
    reason: ShortText | None = None
    #: Who pressed, as the agent knows them (the Telegram user id, for Telegram).
    detail: ShortText | None = None


class GrantsOp(ControlBase, tag="grants"):
    """List the grants in force."""


class RevokeOp(ControlBase, tag="revoke"):
    """Revoke one grant."""

    grant: GrantId


class MonitorOp(ControlBase, tag="monitor"):
    """Receive monitor events and alerts as they happen (`{"event": "monitor", ...}`)."""

    workload: str | None = None
    kinds: list[Annotated[str, msgspec.Meta(max_length=32)]] = []
    min_severity: Literal["info", "low", "medium", "high", "critical"] = "info"
    alerts_only: bool = False


class RespondOp(ControlBase, tag="respond"):
    """Carry out a response on a workload now (audited with who asked)."""

    response: Literal["freeze", "thaw", "kill", "cut-network", "restore-network", "revoke-grants"]
    workload: Annotated[str, msgspec.Meta(pattern=whole(r"[a-zA-Z0-9-]{1,64}"))]


class RespondResult(msgspec.Struct, tag_field="op", tag="respond"):
    """What the response did."""

    result: str


class ReportOp(ControlBase, tag="report"):
    """An agent reports something the audit trail must hold (an ignored button press)."""

    agent: Agent
    what: Literal["ignored_press", "forged_callback"]
    detail: ShortText


class PendingView(msgspec.Struct, kw_only=True):
    """A pending request as a human sees it: every value made safe to show."""

    id: str
    workload: str
    action: str
    target: str | None
    params: dict[str, str]
    cut: bool
    rule: str
    deadline: float
    digest: str
    grant: str
    quorum: int
    votes: int
    #: Identical intents waiting behind this prompt ("once" releases one of them).
    waiting: int = 1


class PendingList(msgspec.Struct, tag_field="op", tag="pending"):
    """The pending requests (also the reply to `subscribe`)."""

    pending: list[PendingView]


class GrantView(msgspec.Struct, kw_only=True):
    """A grant in force."""

    id: str
    workload: str
    action: str
    target: str | None
    params: str
    rule: str
    approvers: list[str]
    created: float
    expires: float | None


class GrantList(msgspec.Struct, tag_field="op", tag="grants"):
    """The grants in force."""

    grants: list[GrantView]


class VerdictResult(msgspec.Struct, tag_field="op", tag="verdict"):
    """A verdict taken: whether it decided the request or waits for more approvers, and
    how many waiting intents it released (the rest, if any, are still pending)."""

    request: str
    decided: bool
    votes: int
    quorum: int
    released: int = 0
    still_waiting: int = 0


class PendingEvent(msgspec.Struct, tag_field="event", tag="pending"):
    """Pushed to subscribed agents: a new request to show, or a shown one that changed
    (same id: more or fewer intents waiting, or a new digest after a release)."""

    request: PendingView


class WithdrawnEvent(msgspec.Struct, tag_field="event", tag="withdrawn", kw_only=True):
    """Pushed to subscribed agents: stop showing this request."""

    id: str
    #: withdrawn: every gateway waiting for it left or cancelled; policy_changed: a
    #: reload no longer decides it by the rule it was asked under.
    reason: Literal["approved", "denied", "timeout", "withdrawn", "unavailable", "policy_changed"]
    by: str | None = None


class NoticeEvent(msgspec.Struct, tag_field="event", tag="notice", kw_only=True):
    """Pushed to subscribed agents: a message from a workload (already made safe to show)."""

    workload: str
    message: str


class AlertEvent(msgspec.Struct, tag_field="event", tag="alert", kw_only=True):
    """Pushed to subscribed agents: a trigger fired (the text is already safe to show)."""

    trigger: str
    severity: str
    workload: str | None
    summary: str
    results: list[str] = []


Event = PendingEvent | WithdrawnEvent | NoticeEvent | AlertEvent


class ReloadResult(msgspec.Struct, tag_field="op", tag="reload"):
    """A reload that took effect: what is in force now."""

    files: list[str]
    rules: int
    workloads: list[str]


ControlRequest = (
    StatusOp
    | ReloadOp
    | SubscribeOp
    | PendingOp
    | ShowOp
    | VerdictOp
    | GrantsOp
    | RevokeOp
    | ReportOp
    | MonitorOp
    | RespondOp
)


# --- decoding ----------------------------------------------------------------------


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    id: RequestId
    intent: msgspec.Raw


class _IdProbe(msgspec.Struct):
    id: Any = None


class _Head(msgspec.Struct):
    action: str


_LEADING_ID: Final = re.compile(rb'^\s*\{\s*"id"\s*:\s*"([\x21\x23-\x5b\x5d-\x7e]{1,128})"\s*[,}]')
_request_decoder: Final = msgspec.json.Decoder(Request)
_cancel_decoder: Final = msgspec.json.Decoder(CancelRequest)
_envelope_decoder: Final = msgspec.json.Decoder(_Envelope)
_id_decoder: Final = msgspec.json.Decoder(_IdProbe)
_head_decoder: Final = msgspec.json.Decoder(_Head)
_action_decoders: Final[dict[str, msgspec.json.Decoder[Any]]] = {
    name: msgspec.json.Decoder(a.params) for name, a in ACTIONS.items()
}
_control_decoder: Final = msgspec.json.Decoder(ControlRequest)
_encoder: Final = msgspec.json.Encoder()


def decode_request(line: bytes) -> Request | CancelRequest:
    """Decode one request line (without its newline) or raise ProtocolError."""
    try:
        return _request_decoder.decode(line)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        pass
    if b'"cancel"' in line:
        try:
            return _cancel_decoder.decode(line)
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            pass
    # The fast path failed; find out exactly why, so the caller gets a precise code.
    raise _classify(line)


def _classify(line: bytes) -> ProtocolError:
    # A request that decodes has valid UTF-8 in every string; the probes below skip
    # values without checking them, so check the whole line first.
    # A pipelining client needs the id to know which request failed, even when the line
    # does not decode; trust only an id written as the object's very first key.
    lead = _LEADING_ID.match(line)
    lead_id = lead.group(1).decode("ascii") if lead else None
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return ProtocolError("bad_frame", "line is not valid UTF-8", lead_id)
    try:
        probe = _id_decoder.decode(line)
    except msgspec.ValidationError:
        return ProtocolError("bad_request", "a request must be a JSON object", lead_id)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        return ProtocolError("bad_frame", _frame_message(exc), lead_id)
    rid = probe.id if _usable_id(probe.id) else None
    try:
        env = _envelope_decoder.decode(line)
    except msgspec.ValidationError as exc:
        return ProtocolError("bad_request", str(exc), rid)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        return ProtocolError("bad_frame", _frame_message(exc), rid)
    try:
        head = _head_decoder.decode(env.intent)
    except msgspec.ValidationError:
        return ProtocolError(
            "bad_request", "`intent` must be an object with a string `action`", rid
        )
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        return ProtocolError("bad_frame", _frame_message(exc), rid)
    decoder = _action_decoders.get(head.action)
    if decoder is None:
        return ProtocolError("unknown_action", f"unknown action {_shown(head.action)}", rid)
    try:
        decoder.decode(env.intent)
    except msgspec.ValidationError as exc:
        return ProtocolError("invalid_params", f"{head.action}: {exc}", rid)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        return ProtocolError("bad_frame", _frame_message(exc), rid)
    # Each part decodes on its own; whatever remains is a whole-request problem.
    return ProtocolError("bad_request", "request does not match the protocol", rid)


def decode_control(line: bytes) -> ControlRequest:
    """Decode one control-socket line or raise ProtocolError."""
    try:
        op: ControlRequest = _control_decoder.decode(line)
        return op
    except msgspec.ValidationError as exc:
        rid: str | None = None
        try:
            probe = _id_decoder.decode(line)
            rid = probe.id if _usable_id(probe.id) else None
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            pass
        return_code: ErrorCode = "unknown_action" if "`$.op`" in str(exc) else "bad_request"
        raise ProtocolError(return_code, str(exc), rid) from None
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_frame", _frame_message(exc)) from None


def _usable_id(value: object) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= 128
        and all("\x21" <= c <= "\x7e" for c in value)
    )


def _frame_message(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "JSON is nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return "line is not valid UTF-8"
    return str(exc)


def _shown(value: str) -> str:
    """A bounded, printable rendering of untrusted text for an error message."""
    text = value[:64].encode("unicode_escape").decode("ascii")
    return repr(text + ("..." if len(value) > 64 else ""))


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


def intent_params(intent: IntentBase) -> dict[str, Any]:
    """The intent's params as a plain dict (target and action tag excluded)."""
    return {f: getattr(intent, f) for f in intent.__struct_fields__ if f != "target"}


def encode_event(event: Event) -> bytes:
    """Encode an agent event as one JSON line."""
    return _encoder.encode(event) + b"\n"


def encode_json(value: object) -> bytes:
    """Encode any msgspec-encodable value as compact JSON (no newline)."""
    return _encoder.encode(value)
