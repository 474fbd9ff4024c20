"""The operators' side of the wire: commands on control.sock (root and the operators'
group), their results, and the events pushed to subscribed approval agents.

Flat commands, `{"id": "c1", "op": "status"}`, tagged on `op`; events are tagged on
`event`. What both sockets share is in `wire.common`.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Final, Literal

import msgspec

from executors.base import whole

from .common import ErrorCode, ProtocolError, RequestId, frame_message, probe_id


class ControlBase(msgspec.Struct, tag_field="op", forbid_unknown_fields=True, kw_only=True):
    """Base of every operator command on control.sock (flat: `{"id":..,"op":..}`)."""

    id: RequestId


class StatusOp(ControlBase, tag="status"):
    """The daemon's status, as the `status` action reports it."""


class ReloadOp(ControlBase, tag="reload"):
    """Re-read config and policy; swapped in whole, or refused with the old one kept."""


class PolicySourceOp(ControlBase, tag="policy-source"):
    """The policy in force as it was read: each file's name and text (`reload --diff`)."""


class PolicyFile(msgspec.Struct, frozen=True):
    """One policy file in force."""

    name: str
    text: str


class PolicySource(msgspec.Struct, tag_field="op", tag="policy-source"):
    """The policy in force, file by file, in load order, and the workloads (with their
    tags) it was compiled for: what another machine needs to compile it the same way."""

    files: list[PolicyFile]
    #: None from a daemon older than this field: a diff elsewhere then cannot know them.
    workloads: dict[str, list[str]] | None = None


Agent = Literal["desktop", "telegram", "cli", "web"]
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


#: The responses an operator (or a trigger) can carry out on a workload: the one list.
Response = Literal["freeze", "thaw", "kill", "cut-network", "restore-network", "revoke-grants"]
#: What each does, in a line (the CLI's help).
RESPONSES: Final[dict[Response, str]] = {
    "freeze": "freeze every process of a workload (cgroup)",
    "thaw": "thaw a frozen workload",
    "kill": "kill every process of a workload",
    "cut-network": "drop all of a workload's traffic and empty its allow sets",
    "restore-network": "undo cut-network",
    "revoke-grants": "revoke every grant a workload holds",
}
#: What a trigger may do on firing: alert, or a response that is not an undo.
TriggerResponse = Literal["alert", "freeze", "kill", "cut-network", "revoke-grants"]


class RespondOp(ControlBase, tag="respond"):
    """Carry out a response on a workload now (audited with who asked)."""

    response: Response
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
    | PolicySourceOp
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


_control_decoder: Final = msgspec.json.Decoder(ControlRequest)
_encoder: Final = msgspec.json.Encoder()


def decode_control(line: bytes) -> ControlRequest:
    """Decode one control-socket line or raise ProtocolError."""
    try:
        op: ControlRequest = _control_decoder.decode(line)
        return op
    except msgspec.ValidationError as exc:
        rid: str | None = None
        with contextlib.suppress(msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            rid = probe_id(line)
        return_code: ErrorCode = "unknown_action" if "`$.op`" in str(exc) else "bad_request"
        raise ProtocolError(return_code, str(exc), rid) from None
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_frame", frame_message(exc)) from None


def encode_event(event: Event) -> bytes:
    """Encode an agent event as one JSON line."""
    return _encoder.encode(event) + b"\n"
