"""What a workload can reach: for each action, the rules that can still decide it.

Used to tell an agent what it may ask for (the MCP bridge's tools, `clawvisor skill`)
without a request in hand: the same rules `evaluate` walks, cut where a catch-all
rule shadows everything after it.
"""

from __future__ import annotations

from .evaluate import candidates
from .model import Policy, Rule
from .subjects import ANY, DEFAULT, SELF


def reachable(policy: Policy, source: str, action: str) -> tuple[Rule, ...]:
    """The rules that can decide `action` for `source`, in evaluation order.

    A rule with no constraints and target `*` matches every request that reaches it,
    so nothing after it can ever decide; the list stops there.
    """
    found: list[Rule] = []
    for rule in candidates(policy, source, action):
        found.append(rule)
        if rule.target == ANY and not rule.constraints:
            break
    return tuple(found)


def may_proceed(rules: tuple[Rule, ...]) -> bool:
    """True when some rule could allow the action, or ask a human about it."""
    return any(r.decision != "deny" for r in rules)


def describe_target(pattern: str) -> str:
    """A rule's target pattern in words."""
    if pattern == ANY:
        return "any workload or none"
    if pattern == DEFAULT:
        return "no target given"
    if pattern == SELF:
        return "the sending workload itself"
    if pattern == "@anyvm":
        return "any named workload"
    if pattern.startswith("@tag:"):
        return f"workloads tagged {pattern[5:]!r}"
    return f"workload {pattern!r}"


def conditions(rule: Rule) -> list[str]:
    """Everything a request must satisfy for `rule` to decide it, in words."""
    found = [f"target: {describe_target(rule.target)}"]
    found.extend(c.describe() for c in rule.constraints)
    if rule.rate is not None:
        found.append(f"at most {rule.rate.text}")
    return found
