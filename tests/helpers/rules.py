"""Policy text for tests: one `[[rule]]` table per call, laid out the same way every time
(header, action, source, target, decision, extras, params, then a blank line), so the
line a rule starts on is predictable. `policy_test()` and `groups()` write the file's
other two kinds of table the same way."""

from __future__ import annotations

import json


def rule(
    action: str | list[str],
    source: str = "*",
    decision: str = "allow",
    target: str = "*",
    params: dict[str, str] | None = None,
    *,
    dotted: bool = False,
    **extra: object,
) -> str:
    """A rule table; `extra` values are written as JSON (TOML-compatible for str/int/list),
    `params` values as raw TOML: in a `[rule.params]` subtable, or with `dotted` as
    `params.NAME = value` lines of the rule's own table (one line fewer). An empty
    `params` is written too, as an empty table."""
    lines = [
        "[[rule]]",
        f"action = {json.dumps(action)}",
        f"source = {json.dumps(source)}",
        f"target = {json.dumps(target)}",
        f"decision = {json.dumps(decision)}",
        *(f"{k} = {json.dumps(v)}" for k, v in extra.items()),
    ]
    if params is not None and dotted:
        lines += [f"params.{k} = {v}" for k, v in params.items()] or ["params = {}"]
    elif params is not None:
        lines += ["[rule.params]", *(f"{k} = {v}" for k, v in params.items())]
    return "\n".join(lines) + "\n\n"


def policy_test(
    source: str,
    action: str,
    expect: str,
    params: dict[str, str] | None = None,
    **extra: str,
) -> str:
    """A `[[test]]` table (header, source, action, expect, extras such as `target` or
    `rule`, then `params.NAME = value` lines with raw TOML values, then a blank line)."""
    lines = [
        "[[test]]",
        f"source = {json.dumps(source)}",
        f"action = {json.dumps(action)}",
        f"expect = {json.dumps(expect)}",
        *(f"{k} = {json.dumps(v)}" for k, v in extra.items()),
        *(f"params.{k} = {v}" for k, v in (params or {}).items()),
    ]
    return "\n".join(lines) + "\n\n"


def groups(**members: list[str]) -> str:
    """A `[groups]` table, one `NAME = [actions]` line per group, then a blank line."""
    lines = ["[groups]", *(f"{name} = {json.dumps(acts)}" for name, acts in members.items())]
    return "\n".join(lines) + "\n\n"


def starts(policy: str, nth: int) -> int:
    """The line the nth rule (1-based) of `policy` starts on."""
    return [i for i, ln in enumerate(policy.splitlines(), 1) if ln == "[[rule]]"][nth - 1]
