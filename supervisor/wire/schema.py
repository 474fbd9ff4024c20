"""The protocol's JSON Schema, generated from the msgspec Structs of the wire package.

Never written by hand: `clawvisor schema` prints it, `make schema` refreshes the copy
shipped as `supervisor/wire/protocol.schema.json`, and a test fails when the two differ.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from executors import ACTIONS

from .control import ControlRequest
from .intents import CancelRequest, CapabilitiesChanged, IntentReply, Request, WatchRequest

SCHEMA_FILE: Final = Path(__file__).with_name("protocol.schema.json")
DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
Part = Literal["all", "request", "reply", "control"]
PARTS: Final[tuple[Part, ...]] = ("all", "request", "reply", "control")


def _camel(action: str) -> str:
    return "".join(w.capitalize() for w in action.split("-"))


def _renames(defs: dict[str, Any]) -> dict[str, str]:
    """Readable names for the per-action Structs (msgspec qualifies names that clash)."""
    renames = {"IntentReply": "Reply"}
    for name, action in ACTIONS.items():
        for struct, kind in ((action.params, "Intent"), (action.result, "Result")):
            tag = struct.__struct_config__.tag
            new = f"{_camel(tag if isinstance(tag, str) else name)}{kind}"
            for key in (f"{struct.__module__}.{struct.__qualname__}", struct.__name__):
                if key in defs:
                    renames[key] = new
                    break
    return renames


def _rename(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                name = value.rsplit("/", 1)[1]
                out[key] = f"#/$defs/{renames.get(name, name)}"
            elif key == "mapping" and isinstance(value, dict):
                out[key] = {
                    k: f"#/$defs/{renames.get(v.rsplit('/', 1)[1], v.rsplit('/', 1)[1])}"
                    for k, v in value.items()
                }
            else:
                out[key] = _rename(value, renames)
        return out
    if isinstance(node, list):
        return [_rename(v, renames) for v in node]
    return node


def clean_descriptions(node: Any) -> Any:
    """Every `description` dedented and stripped here, whatever the msgspec release does
    with docstring indentation (0.23 started keeping it): the schema is ours to define."""
    if isinstance(node, dict):
        return {
            k: inspect.cleandoc(v)
            if k == "description" and isinstance(v, str)
            else clean_descriptions(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [clean_descriptions(v) for v in node]
    return node


def protocol_schema(part: Part = "all") -> dict[str, Any]:
    """The JSON Schema (2020-12) of `part`: requests, replies, control commands, or all."""
    # msgspec draws no schema of a union of untagged Structs: each line kind is a root,
    # and the request and reply parts are `anyOf` their kinds.
    (intent, cancel, watch, answer, event, control), defs = msgspec.json.schema_components(
        [Request, CancelRequest, WatchRequest, IntentReply, CapabilitiesChanged, ControlRequest],
        ref_template="#/$defs/{name}",
    )
    request = {"anyOf": [intent, cancel, watch]}
    reply = {"anyOf": [answer, event]}
    renames = _renames(defs)
    defs = dict(sorted((renames.get(k, k), _rename(v, renames)) for k, v in defs.items()))
    for name in ACTIONS:
        defs[f"{_camel(name)}Intent"]["title"] = name
    defs["Reply"]["title"] = "Reply"
    roots = {
        "request": _rename(request, renames),
        "reply": _rename(reply, renames),
        "control": _rename(control, renames),
    }
    if part == "all":
        root: dict[str, Any] = {
            "description": "One line on a clawvisor socket: a request or a reply on "
            "intents.sock, or an operator command on control.sock.",
            "oneOf": [roots["request"], roots["reply"], roots["control"]],
        }
    else:
        root = dict(roots[part])
    cleaned: dict[str, Any] = clean_descriptions(
        {
            "$schema": DIALECT,
            "$id": f"urn:clawvisor:protocol:{part}",
            "title": f"clawvisor protocol ({part})",
            **root,
            "$defs": defs,
        }
    )
    return cleaned


def schema_text(part: Part = "all") -> str:
    """The schema as stable, indented JSON text (what `clawvisor schema` prints)."""
    return json.dumps(protocol_schema(part), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def action_params_schema(action: str) -> dict[str, Any]:
    """One action's params as a self-contained object schema (the `action` tag left out)."""
    (root,), defs = msgspec.json.schema_components(
        [ACTIONS[action].params], ref_template="#/$defs/{name}"
    )
    ref = root["$ref"].rsplit("/", 1)[1]
    schema: dict[str, Any] = dict(defs.pop(ref))
    props = dict(schema.get("properties", {}))
    props.pop("action", None)
    schema["properties"] = props
    schema["required"] = [r for r in schema.get("required", []) if r != "action"]
    schema.pop("title", None)
    if defs:
        schema["$defs"] = defs
    cleaned: dict[str, Any] = clean_descriptions(schema)
    return cleaned
