"""intents.decode_request: the fast path decodes, every failure gets one precise code."""

from __future__ import annotations

import typing

import pytest

from executors import ACTIONS
from supervisor.wire import common, control, intents
from supervisor.wire.common import ERROR_CODES, ProtocolError
from supervisor.wire.intents import decode_request


def code_of(line: bytes) -> tuple[str, str | None]:
    with pytest.raises(ProtocolError) as info:
        decode_request(line)
    return info.value.code, info.value.request_id


def test_valid_request_decodes_to_the_action_struct():
    req = decode_request(b'{"id":"a","intent":{"action":"open-url","url":"https://E.org/x"}}')
    assert req.id == "a"
    assert type(req.intent).__name__ == "Params"
    assert req.intent.url == "https://e.org/x"  # host normalised once, at decode


def test_every_action_in_the_catalogue_is_in_the_wire_union():
    tags = {t.__struct_config__.tag for t in typing.get_args(intents.Intent)}
    assert tags == set(ACTIONS)


def test_error_codes_are_the_documented_closed_set():
    assert set(typing.get_args(common.ErrorCode)) == set(ERROR_CODES)


@pytest.mark.parametrize(
    "line, code",
    [
        (b"\xff\xfe", "bad_frame"),
        (b'{"id":"a","intent":{"action":"st\xc3\x28tus"}}', "bad_frame"),
        (b"{" * 10, "bad_frame"),
        (b'{"id":"a","intent":' + b"[" * 50000 + b"]" * 50000 + b"}", "bad_frame"),
        (b"[" * 50000 + b"]" * 50000, "bad_request"),
        (b"42", "bad_request"),
        (b'{"id":"a"}', "bad_request"),
        (b'{"id":"a","intent":{},"extra":1}', "bad_request"),
        (b'{"id":"a","intent":{"target":"x"}}', "bad_request"),
        (b'{"id":"a","intent":{"action":"launch-missiles"}}', "unknown_action"),
        (b'{"id":"a","intent":{"action":"status","verbose":true}}', "invalid_params"),
        (
            b'{"id":"a","intent":{"action":"open-url","url":"javascript:alert(1)"}}',
            "invalid_params",
        ),
        (b'{"id":"a","intent":{"action":"status","target":"../etc"}}', "invalid_params"),
    ],
)
def test_failures_are_classified(line, code):
    assert code_of(line)[0] == code


def test_id_is_recovered_for_errors_when_usable():
    assert code_of(b'{"id":"mine","intent":{"action":"nope"}}') == ("unknown_action", "mine")
    assert code_of(b'{"id":"has space","intent":{"action":"nope"}}')[1] is None
    assert code_of(b'{"id":7,"intent":{"action":"status"}}')[1] is None


def test_unknown_action_name_is_shown_bounded_and_escaped():
    line = b'{"id":"a","intent":{"action":"' + b"\\u001b[31m" + b"x" * 500 + b'"}}'
    code, _ = code_of(line)
    with pytest.raises(ProtocolError) as info:
        decode_request(line)
    assert code == "unknown_action"
    assert "\x1b" not in info.value.message
    assert len(info.value.message) < 120


def test_denials_have_status_denied_and_errors_status_error():
    assert common.error_reply("a", "policy_denied", "m").status == "denied"
    assert common.error_reply("a", "approval_timeout", "m").status == "denied"
    assert common.error_reply("a", "bad_frame", "m").status == "error"
    assert common.error_reply("a", "executor_failed", "m").status == "error"


def test_reply_encoding_omits_absent_fields():
    line = common.encode_reply(common.error_reply(None, "bad_frame", "m"))
    assert line == b'{"id":null,"status":"error","error":{"code":"bad_frame","message":"m"}}\n'


def test_control_ops_decode_and_unknown_ops_are_unknown_action():
    assert control.decode_control(b'{"id":"c","op":"status"}').id == "c"
    with pytest.raises(ProtocolError) as info:
        control.decode_control(b'{"id":"c","op":"rm"}')
    assert info.value.code == "unknown_action"


def test_a_leading_id_is_recovered_from_a_line_that_does_not_decode():
    assert code_of(b'{"id":"keep","intent":{"action":"search","query":"\\ud800"}}') == (
        "bad_frame",
        "keep",
    )
    assert code_of(b'{"id":"ok","intent":{"action":"status"}} trailing junk') == ("bad_frame", "ok")
    # an id that is not the first key, or has escapes, is not trusted from a broken line
    assert code_of(b'{"intent":{"id":"inner"},"id":"x",')[1] is None
    assert code_of(b'{"id":"a\\\\b","intent":')[1] is None
