"""The published schema against the running daemon's decoder and its real replies."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings

from supervisor.wire.schema import SCHEMA_FILE
from tests.helpers import rig
from tests.helpers.rules import rule
from tests.helpers.schema_strategy import from_schema

# The schema as shipped (generated at build time), not regenerated in this process.
SHIPPED = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
REQUEST = {**SHIPPED, "oneOf": [{"$ref": "#/$defs/Request"}]}
REPLY = {**SHIPPED, "oneOf": [{"$ref": "#/$defs/Reply"}]}
DECODER_ERRORS = {"bad_frame", "bad_request", "unknown_action"}

# Only status is allowed, to nobody that can change anything: every generated request is
# decided (mostly denied) and nothing runs.
POLICY = rule("status")


@pytest.fixture(scope="module")
def conn(make_user, make_daemon):
    gw = make_user()
    daemon = make_daemon({"gw": gw}, {"10.toml": POLICY})
    sock = rig.connect_as(daemon.intents, gw)
    yield sock
    sock.close()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=from_schema(REQUEST))
def test_a_request_the_shipped_schema_accepts_is_never_refused_by_the_decoder(conn, request):
    jsonschema.Draft202012Validator(REQUEST).validate(request)
    request["id"] = "h"  # one id, so a reply is certainly this request's
    conn.sendall(json.dumps(request).encode() + b"\n")
    [reply] = rig.read_lines(conn, 1)
    jsonschema.Draft202012Validator(REPLY).validate(reply)
    code = (reply.get("error") or {}).get("code")
    assert reply["id"] == "h"
    assert code not in DECODER_ERRORS, (reply, request)


def test_real_replies_of_every_status_validate_against_the_reply_schema(conn):
    lines = [
        {"id": "ok", "intent": {"action": "status"}},
        {"id": "denied", "intent": {"action": "search", "query": "x"}},
        {"id": "invalid", "intent": {"action": "open-url", "url": "ftp://x"}},
        {"id": "unknown", "intent": {"action": "nope"}},
    ]
    for line in lines:
        conn.sendall(json.dumps(line).encode() + b"\n")
    replies = rig.read_lines(conn, len(lines))
    v = jsonschema.Draft202012Validator(REPLY)
    for reply in replies:
        v.validate(reply)
    assert [r["status"] for r in replies] == ["ok", "denied", "error", "error"]
    assert replies[0]["result"]["action"] == "status"
