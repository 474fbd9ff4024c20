"""The gateways' side of the wire: newline-delimited JSON on intents.sock, one object per
line, at most 64 KiB a line.

This module is the one source of truth for what gateways may send and what they get
back (operators' commands are in `wire.control`; what both share in `wire.common`). Requests::

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
from executors.base import IntentBase, ResultBase

from .common import (
    ProtocolError,
    Reply,
    RequestId,
    _doc,
    frame_message,
    probe_id,
)

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


class WatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Be told on this connection when what the gateway shows has changed. `capabilities`:
    after a reload that changed this workload's capabilities, one line
    `{"event": "capabilities_changed"}` (ask `capabilities` again to see what the policy
    in force lets it do); a reload that changed nothing of its own tells it nothing."""

    id: RequestId
    watch: Annotated[Literal["capabilities"], msgspec.Meta(description="What to be told about.")]


class WatchResult(ResultBase, tag="watch", frozen=True):
    """The connection now gets an event line each time `watching` changes."""

    watching: Literal["capabilities"]


class CapabilitiesChanged(msgspec.Struct, tag_field="event", tag="capabilities_changed"):
    """Pushed to connections that watch `capabilities`, after a reload that changed the
    actions or rules this workload may use."""


#: Any line a gateway may send.
RequestLine = Request | CancelRequest | WatchRequest


class IntentReply(Reply):
    """The answer to one request: the action's typed `result`, or an `error` saying why not.

    `id` is null only when the request had no usable id. (The daemon builds `Reply`;
    this is the same JSON, decoded with the result typed per action.)
    """

    result: Annotated[
        Result | CancelResult | WatchResult | None,
        _doc("The action's result, or a cancel's or a watch's (status ok)."),
    ] = None


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    id: RequestId
    intent: msgspec.Raw


class _Head(msgspec.Struct):
    action: str


_LEADING_ID: Final = re.compile(rb'^\s*\{\s*"id"\s*:\s*"([\x21\x23-\x5b\x5d-\x7e]{1,128})"\s*[,}]')
_request_decoder: Final = msgspec.json.Decoder(Request)
_cancel_decoder: Final = msgspec.json.Decoder(CancelRequest)
_watch_decoder: Final = msgspec.json.Decoder(WatchRequest)
_envelope_decoder: Final = msgspec.json.Decoder(_Envelope)
_head_decoder: Final = msgspec.json.Decoder(_Head)
_action_decoders: Final[dict[str, msgspec.json.Decoder[Any]]] = {
    name: msgspec.json.Decoder(a.params) for name, a in ACTIONS.items()
}


def decode_request(line: bytes) -> RequestLine:
    """Decode one request line (without its newline) or raise ProtocolError."""
    try:
        return _request_decoder.decode(line)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        pass
    for key, decoder in ((b'"cancel"', _cancel_decoder), (b'"watch"', _watch_decoder)):
        if key in line:
            try:
                decoded: CancelRequest | WatchRequest = decoder.decode(line)
                return decoded
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
        rid = probe_id(line)
    except msgspec.ValidationError:
        return ProtocolError("bad_request", "a request must be a JSON object", lead_id)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        return ProtocolError("bad_frame", frame_message(exc), lead_id)
    try:
        env = _envelope_decoder.decode(line)
    except msgspec.ValidationError as exc:
        return ProtocolError("bad_request", str(exc), rid)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        return ProtocolError("bad_frame", frame_message(exc), rid)
    try:
        head = _head_decoder.decode(env.intent)
    except msgspec.ValidationError:
        return ProtocolError(
            "bad_request", "`intent` must be an object with a string `action`", rid
        )
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        return ProtocolError("bad_frame", frame_message(exc), rid)
    decoder = _action_decoders.get(head.action)
    if decoder is None:
        return ProtocolError("unknown_action", f"unknown action {_shown(head.action)}", rid)
    try:
        decoder.decode(env.intent)
    except msgspec.ValidationError as exc:
        return ProtocolError("invalid_params", f"{head.action}: {exc}", rid)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        return ProtocolError("bad_frame", frame_message(exc), rid)
    # Each part decodes on its own; whatever remains is a whole-request problem.
    return ProtocolError("bad_request", "request does not match the protocol", rid)


def _shown(value: str) -> str:
    """A bounded, printable rendering of untrusted text for an error message."""
    text = value[:64].encode("unicode_escape").decode("ascii")
    return repr(text + ("..." if len(value) > 64 else ""))


def intent_params(intent: IntentBase) -> dict[str, Any]:
    """The intent's params as a plain dict (target and action tag excluded)."""
    return {f: getattr(intent, f) for f in intent.__struct_fields__ if f != "target"}
