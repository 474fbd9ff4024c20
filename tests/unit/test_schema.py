"""The protocol's JSON Schema: generated from the Structs, valid, and true to the decoder."""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings

from executors import ACTIONS
from supervisor.wire.common import ProtocolError
from supervisor.wire.intents import decode_request
from supervisor.wire.schema import SCHEMA_FILE, protocol_schema, schema_text
from tests.helpers.schema_strategy import from_schema

#: A valid request for every action, as a gateway would send it.
EXAMPLES: dict[str, dict[str, Any]] = {
    "status": {"action": "status"},
    "open-url": {"action": "open-url", "target": "web", "url": "https://example.com/a"},
    "search": {"action": "search", "query": "debian bookworm"},
    "install-app": {"action": "install-app", "package": "jq"},
    "egress-allow": {"action": "egress-allow", "host": "example.com", "port": 443, "ttl": 60},
    "sync-out": {"action": "sync-out", "paths": ["out/report.pdf"]},
    "workload-start": {"action": "workload-start", "target": "web"},
    "workload-stop": {"action": "workload-stop", "target": "web"},
    "workload-restart": {"action": "workload-restart", "target": "web"},
    "notify": {"action": "notify", "message": "done"},
    "run-ops": {"action": "run-ops", "script": "rotate-logs", "args": ["--dry-run"]},
    "capabilities": {"action": "capabilities"},
}


@functools.cache
def validator(part: str) -> jsonschema.protocols.Validator:
    schema = protocol_schema(part)  # type: ignore[arg-type]
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_shipped_schema_file_is_what_the_structs_generate():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), "run `make schema`"


def test_schema_is_valid_json_schema_2020_12_for_every_part():
    for part in ("all", "request", "reply", "control"):
        schema = protocol_schema(part)  # type: ignore[arg-type]
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(schema)


def test_examples_cover_every_action():
    assert set(EXAMPLES) == set(ACTIONS)


@pytest.mark.parametrize("action", sorted(EXAMPLES))
def test_schema_accepts_a_real_request_the_daemon_decodes(action):
    request = {"id": "r-1", "intent": EXAMPLES[action]}
    validator("request").validate(request)
    decoded = decode_request(json.dumps(request).encode())
    assert decoded.intent.__struct_config__.tag == action


@pytest.mark.parametrize(
    "bad",
    [
        {"intent": {"action": "status"}},  # no id
        {"id": "r1"},  # no intent
        {"id": "has space", "intent": {"action": "status"}},
        {"id": "", "intent": {"action": "status"}},
        {"id": "r1", "intent": {"action": "rm-rf"}},
        {"id": "r1", "intent": {"action": "status", "shell": "sh -c id"}},
        {"id": "r1", "intent": {"action": "open-url"}},  # url missing
        {"id": "r1", "intent": {"action": "open-url", "url": 5}},
        {"id": "r1", "intent": {"action": "status", "target": "../root"}},
        {"id": "r1", "intent": {"action": "egress-allow", "host": "a.example", "port": 70000}},
        {"id": "r1", "intent": {"action": "run-ops", "script": "x", "args": ["a"] * 17}},
        {"id": "r1", "intent": {"action": "status"}, "extra": True},
        # Python's `$` matches before a final newline; JSON Schema's does not. Neither may.
        {"id": "r1\n", "intent": {"action": "status"}},
        {"id": "r1", "intent": {"action": "status", "target": "web\n"}},
    ],
)
def test_schema_rejects_what_the_daemon_refuses(bad):
    with pytest.raises(jsonschema.ValidationError):
        validator("request").validate(bad)
    with pytest.raises(ProtocolError):
        decode_request(json.dumps(bad).encode())


def test_every_param_of_every_action_is_described():
    defs = protocol_schema()["$defs"]
    for name, action in ACTIONS.items():
        intent = next(d for d in defs.values() if d.get("title") == name)
        for param, prop in intent["properties"].items():
            if param == "action":
                continue
            described = "description" in prop or any(
                "description" in alt for alt in prop.get("anyOf", [])
            )
            assert described, f"{name}.{param} has no description"
        assert intent.get("description"), name
        assert set(intent["properties"]) - {"action"} == set(action.params.__struct_fields__)


def test_reply_schema_accepts_typed_results_and_errors():
    v = validator("reply")
    v.validate(
        {
            "id": "r1",
            "status": "ok",
            "decision": "allow",
            "rule": "a.toml:3",
            "result": {"action": "notify", "delivered": 1},
        }
    )
    v.validate(
        {
            "id": None,
            "status": "error",
            "error": {"code": "bad_frame", "message": "line is not valid UTF-8"},
        }
    )
    with pytest.raises(jsonschema.ValidationError):
        v.validate({"id": "r1", "status": "error", "error": {"code": "oops", "message": "x"}})


_request_schema = protocol_schema("request")


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(from_schema(_request_schema))
def test_no_request_the_schema_accepts_is_a_bad_request_in_process(request):
    validator("request").validate(request)  # the generator is true to the schema
    line = json.dumps(request).encode()
    try:
        decode_request(line)
    except ProtocolError as exc:
        # Checks a schema cannot state (a URL's scheme, a host's form) are invalid_params.
        assert exc.code == "invalid_params", (exc.code, exc.message, request)


def test_the_openclaw_plugins_advice_is_the_bridges():
    from supervisor.gateway.describe import ADVICE_FILE, advice_json

    assert ADVICE_FILE.read_text(encoding="utf-8") == advice_json(), "run `make schema`"


def test_the_openclaw_plugins_manifest_declares_every_action_as_a_tool():
    from supervisor.gateway.openclaw import PLUGIN_MANIFEST, plugin_manifest

    assert PLUGIN_MANIFEST.read_text(encoding="utf-8") == plugin_manifest(), "run `make schema`"
