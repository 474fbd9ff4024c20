"""A workload's capabilities in words an agent reads: tool descriptions and skill sections."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from executors.capabilities import Capability, RuleInfo

from ..wire.schema import action_params_schema

#: What the model is told, per error code, besides the daemon's own message.
ADVICE: dict[str, str] = {
    "policy_denied": "The machine owner's policy does not allow this. Retrying, rephrasing or "
    "splitting the request will not change that; tell the user what was refused and why.",
    "approval_denied": "A human reviewer was asked and said no. Do not retry; tell the user.",
    "approval_timeout": "A human reviewer was asked but did not answer in time, so the "
    "action was not done. Retrying will not help unless the user says they are ready to "
    "approve it.",
    "rate_limited": "Too many requests from this workload right now. Nothing was done; "
    "wait before trying again.",
    "invalid_params": "The arguments were not valid; nothing was done. Fix the argument "
    "named in the message.",
    "unknown_action": "clawvisor has no such action; nothing was done.",
    "executor_failed": "The action was allowed and started, but failed.",
    "unavailable": "clawvisor cannot carry out actions right now (it may be shutting down "
    "or its audit trail is unavailable); nothing was done.",
    "unauthorized": "This user is not a workload clawvisor serves. No call can succeed.",
}

#: Where the OpenClaw plugin (plain JavaScript, shipped in the package) reads ADVICE from.
ADVICE_FILE = Path(__file__).resolve().parent / "openclaw_plugin" / "advice.json"


def advice_json() -> str:
    """ADVICE as the plugin's advice.json holds it (`make schema` writes it)."""
    return json.dumps(ADVICE, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


#: The bridge's own plumbing, never offered to an agent as something to do.
NOT_TOOLS = frozenset({"capabilities"})


def rule_line(rule: RuleInfo) -> str:
    """One rule as a sentence: what it does, when, and its file:line."""
    when = "; ".join(rule.conditions)
    if rule.decision == "allow":
        what = "runs at once"
    elif rule.decision == "deny":
        what = "is refused"
    else:
        who = ", ".join(rule.approvers) or "a human"
        what = f"waits for a human to approve ({who}; refused after {rule.timeout:g} s)"
    return f"{what} when {when} [rule {rule.rule}]"


def description(cap: Capability) -> str:
    """The text an agent reads before using `cap.action`."""
    lines = [
        cap.summary,
        "",
        "clawvisor checks every call against the machine owner's policy for this workload. "
        "The first rule that matches decides; a call no rule matches is refused:",
    ]
    lines.extend(f"- {rule_line(r)}" for r in cap.rules)
    lines.append(
        "A refusal is final: retrying the same call will not change it."
        + (" This action changes the machine." if cap.mutating else "")
    )
    return "\n".join(lines)


def offered(caps: list[Capability]) -> list[Capability]:
    """The capabilities an agent may be offered as actions to take."""
    return [c for c in caps if c.action not in NOT_TOOLS]


def input_schema(action: str) -> dict[str, Any]:
    """The JSON Schema of a tool's arguments: the action's params and `target`."""
    return action_params_schema(action)


def example_params(action: str) -> dict[str, Any]:
    """Placeholder values for each required param, for usage examples."""
    schema = action_params_schema(action)
    props = schema.get("properties", {})
    found: dict[str, Any] = {}
    for name in schema.get("required", []):
        kind = props.get(name, {}).get("type")
        found[name] = 1 if kind == "integer" else [] if kind == "array" else f"<{name}>"
    return found


def send_command(action: str) -> str:
    """A `clawvisor send` line for `action` with placeholder params."""
    parts = ["clawvisor", "send", action]
    for name, value in example_params(action).items():
        if isinstance(value, str):
            parts.append(f"{name}={value}")
        else:
            parts.append(f"{name}:={json.dumps(value)}")
    return " ".join(parts)
