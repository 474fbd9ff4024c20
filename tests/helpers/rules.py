"""Policy text for tests: one `[[rule]]` table per call, laid out the same way every time
(header, action, source, target, decision, extras, params, then a blank line), so the
line a rule starts on is predictable."""

from __future__ import annotations

import json


def rule(
    action: str,
    source: str = "*",
    decision: str = "allow",
    target: str = "*",
    params: dict[str, str] | None = None,
    **extra: object,
) -> str:
    """A rule table; `extra` values are written as JSON (TOML-compatible for str/int/list),
    `params` values as raw TOML."""
    lines = [
        "[[rule]]",
        f"action = {json.dumps(action)}",
        f"source = {json.dumps(source)}",
        f"target = {json.dumps(target)}",
        f"decision = {json.dumps(decision)}",
        *(f"{k} = {json.dumps(v)}" for k, v in extra.items()),
    ]
    if params:
        lines += ["[rule.params]", *(f"{k} = {v}" for k, v in params.items())]
    return "\n".join(lines) + "\n\n"


def starts(policy: str, nth: int) -> int:
    """The line the nth rule (1-based) of `policy` starts on."""
    return [i for i, ln in enumerate(policy.splitlines(), 1) if ln == "[[rule]]"][nth - 1]
