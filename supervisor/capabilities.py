"""A workload's rights in words: the `capabilities` result built from the compiled policy."""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from executors import ACTIONS
from executors.capabilities import Capability, RuleInfo
from policy import Policy, Rule
from policy.reach import conditions, may_proceed, reachable

from .gateway.describe import description, input_schema


@cache
def _params(action: str) -> dict[str, Any]:
    # Built once per action: schema generation is far slower than the rest of describe().
    return input_schema(action)


def _rule_info(rule: Rule) -> RuleInfo:
    if rule.decision != "ask":
        return RuleInfo(decision=rule.decision, rule=rule.where, conditions=conditions(rule))
    return RuleInfo(
        decision="ask",
        rule=rule.where,
        conditions=conditions(rule),
        approvers=list(rule.approvers),
        timeout=rule.timeout,
        grant=rule.grant,
        default_target=rule.default_target,
    )


def describe(policy: Policy, source: str) -> list[Capability]:
    """Each action some rule could allow or ask about for `source`, in catalogue order."""
    found: list[Capability] = []
    for name, action in ACTIONS.items():
        rules = reachable(policy, source, name)
        if not may_proceed(rules):
            continue
        cap = Capability(
            action=name,
            summary=action.summary,
            mutating=action.mutating,
            rules=[_rule_info(r) for r in rules],
            params=_params(name),
        )
        found.append(msgspec.structs.replace(cap, description=description(cap)))
    return found
