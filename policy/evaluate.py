"""Decide one request against a compiled policy: first matching rule wins; none is deny."""

from __future__ import annotations

from collections.abc import Mapping

from .model import DEFAULT_DENY, Policy, Rule, Ruling
from .subjects import ANY, DEFAULT, SELF, source_matches, target_matches


def candidates(policy: Policy, source: str, action: str) -> tuple[Rule, ...]:
    """The rules that may apply to `source` asking `action`, in order."""
    found = policy.index.get((action, source))
    if found is not None:
        return found
    return tuple(
        r
        for r in policy.by_action.get(action, ())
        if source_matches(r.source, source, policy.workloads)
    )


def evaluate(
    policy: Policy, source: str, action: str, target: str | None, params: Mapping[str, object]
) -> Ruling:
    """The ruling for `source` asking `action` on `target` with `params`."""
    workloads = policy.workloads
    on_sender = action in policy.sender_actions
    for rule in candidates(policy, source, action):
        # Sources were matched when the index was built. This is `subjects.covers_target`
        # inlined (the hot path): an untargeted intent is decided as if it named the
        # rule's default_target.
        named = target
        if named is None and rule.default_target is not None and rule.target not in (ANY, DEFAULT):
            named = rule.default_target
        if not target_matches(rule.target, source, named, workloads, on_sender):
            continue
        for c in rule.constraints:
            if not c.matches(params.get(c.param)):
                break
        else:
            ruling: Ruling = rule.ruling
            return ruling
    return DEFAULT_DENY


def runs_on(policy: Policy, rule: Rule, source: str, action: str, target: str | None) -> str | None:
    """Where an intent decided by `rule` runs: the target it names; else, for a `@self`
    rule, its sender (never `default_target`); else the rule's `default_target`; else the
    sender for actions that run on their sender; else nowhere in particular (None).

    The one definition: the pipeline runs intents there, and `policy explain`, grants and
    `policy replay` work it out through this same function.
    """
    if target is not None:
        return target
    on_sender = action in policy.sender_actions
    if rule.target == SELF:
        return source if on_sender else None
    if rule.default_target is not None:
        return rule.default_target
    return source if on_sender else None
