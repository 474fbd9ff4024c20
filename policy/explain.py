"""Why a request gets its decision: the deciding rule and, for each earlier rule, why not."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from .model import DEFAULT_DENY, Policy, Rule, Ruling
from .subjects import covers_target, source_matches


class Step(msgspec.Struct, frozen=True):
    """One rule considered: whether it matched, and the reason when it did not."""

    rule: Rule
    matched: bool
    reason: str


class Explanation(msgspec.Struct, frozen=True):
    """The ruling, the rules considered for this action in order, and how many were not."""

    ruling: Ruling
    steps: list[Step]
    other_actions: int


def why_not(
    rule: Rule,
    source: str,
    action: str,
    target: str | None,
    params: Mapping[str, object],
    policy: Policy,
) -> str | None:
    """Why `rule` does not apply to this request (its action matching), or None if it does."""
    if not source_matches(rule.source, source, policy.workloads):
        return f"source {rule.source!r} does not cover {source!r}"
    on_sender = action in policy.sender_actions
    if not covers_target(
        rule.target, rule.default_target, source, target, policy.workloads, on_sender
    ):
        shown = repr(target) if target is not None else "no target (@default)"
        return f"target {rule.target!r} does not cover {shown}"
    for c in rule.constraints:
        value = params.get(c.param)
        if not c.matches(value):
            shown = "missing" if value is None else repr(value)
            return f"param {c.param} = {shown} fails: {c.describe()}"
    return None


def explain(
    policy: Policy, source: str, action: str, target: str | None, params: Mapping[str, object]
) -> Explanation:
    """Walk the rules in order, as evaluation does, recording each one's outcome."""
    steps: list[Step] = []
    other = 0
    for rule in policy.rules:
        if action not in rule.actions:
            other += 1
            continue
        reason = why_not(rule, source, action, target, params, policy)
        if reason is None:
            steps.append(Step(rule=rule, matched=True, reason="matches"))
            return Explanation(ruling=rule.ruling, steps=steps, other_actions=other)
        steps.append(Step(rule=rule, matched=False, reason=reason))
    return Explanation(ruling=DEFAULT_DENY, steps=steps, other_actions=other)
