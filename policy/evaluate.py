"""Decide one request against a compiled policy: first matching rule wins; none is deny."""

from __future__ import annotations

from collections.abc import Mapping

from .model import ANY, DEFAULT_DENY, SELF, Policy, Rule, Verdict


def target_matches(pattern: str, source: str, target: str | None) -> bool:
    """`*` matches anything (also no target); `@self` only the source; a name only itself."""
    if pattern == ANY:
        return True
    if pattern == SELF:
        return target == source
    return target == pattern


def rule_matches(rule: Rule, source: str, target: str | None, params: Mapping[str, object]) -> bool:
    """True when the rule applies to this request (action already selected)."""
    if rule.source not in (ANY, source):
        return False
    if not target_matches(rule.target, source, target):
        return False
    return all(c.matches(params.get(c.param)) for c in rule.constraints)


def evaluate(
    policy: Policy, source: str, action: str, target: str | None, params: Mapping[str, object]
) -> Verdict:
    """The verdict for `source` asking `action` on `target` with `params`."""
    for rule in policy.by_action.get(action, ()):
        if rule_matches(rule, source, target, params):
            return Verdict(decision=rule.decision, rule=rule)
    return DEFAULT_DENY
