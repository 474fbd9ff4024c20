"""Warnings about a policy that loads: unreachable rules, asks nobody can answer, wide allows."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from .catalog import Catalog
from .diff.regions import Regions
from .diff.values import Undecided
from .model import Policy, Rule, Workloads
from .subjects import ANY, ANYVM, DEFAULT, NAME, SELF, TAG, target_matches


class Finding(msgspec.Struct, frozen=True):
    """One lint finding at a position."""

    where: str
    message: str


def _source_covers(a: str, b: str, workloads: Workloads) -> bool:
    if a in (ANY, ANYVM) or a == b:
        return True
    if a.startswith(TAG) and NAME.match(b):
        return a[len(TAG) :] in workloads.get(b, ())
    return False


def _target_covers(a: str, b: str, workloads: Workloads) -> bool:
    if a in (ANY, b):
        return True
    if a == ANYVM:
        return b not in (ANY, DEFAULT)
    if a.startswith(TAG) and NAME.match(b):
        return a[len(TAG) :] in workloads.get(b, ())
    return False


def _untargeted(rule: Rule) -> bool:
    """True when the rule can decide an intent that names no target (`@self` aside)."""
    return rule.target in (ANY, DEFAULT) or rule.default_target is not None


def shadows(first: Rule, later: Rule, workloads: Workloads) -> bool:
    """True when `first` matches every request `later` matches, so `later` never decides."""
    if not later.actions <= first.actions:
        return False
    if not _source_covers(first.source, later.source, workloads):
        return False
    if not _target_covers(first.target, later.target, workloads):
        return False
    if _untargeted(later) and not (
        first.target in (ANY, DEFAULT)
        or (first.default_target is not None and first.default_target == later.default_target)
    ):
        return False
    later_constraints = {(c.param, c.describe()) for c in later.constraints}
    return all((c.param, c.describe()) in later_constraints for c in first.constraints)


def never_matches(rule: Rule, catalog: Catalog) -> list[str]:
    """For each action of the rule that no valid request can match, why (its constraints
    together accept no value the decoder can hand over: an exact URL not written the way
    URLs are normalised, a regex for capitals on a host name, ...)."""
    found = []
    for action in sorted(rule.actions):
        if not rule.constraints:
            break
        try:
            possible = Regions(catalog[action].types).witness(rule.constraints, []) is not None
        except Undecided:
            continue
        if not possible:
            found.append(
                f"never matches {action}: no valid request satisfies "
                + "; ".join(c.describe() for c in rule.constraints)
            )
    return found


def _target_findings(rule: Rule, catalog: Catalog, workloads: Workloads) -> list[str]:
    found = []
    if rule.target == SELF:
        idle = sorted(a for a in rule.actions if not catalog[a].runs_on_sender)
        if idle:
            found.append(
                f"target '@self' never matches {', '.join(idle)} (they act on no workload)"
            )
    d = rule.default_target
    if (
        d is not None
        and d in workloads
        and rule.target not in (ANY, DEFAULT)
        and not target_matches(rule.target, "", d, workloads)
    ):
        found.append(
            f"default_target {d!r} is not covered by target {rule.target!r}: an intent "
            "naming no target never matches this rule"
        )
    return found


def lint(policy: Policy, catalog: Catalog, approvers_available: Iterable[str]) -> list[Finding]:
    """Every warning for `policy`, in rule order."""
    available = set(approvers_available)
    findings: list[Finding] = []
    names = set(policy.workloads)
    tags = {t for ts in policy.workloads.values() for t in ts}
    for i, rule in enumerate(policy.rules):
        for message in [
            *never_matches(rule, catalog),
            *_target_findings(rule, catalog, policy.workloads),
        ]:
            findings.append(Finding(rule.where, message))
        for earlier in policy.rules[:i]:
            if shadows(earlier, rule, policy.workloads):
                findings.append(
                    Finding(rule.where, f"never decides: rule {earlier.where} always matches first")
                )
                break
        if rule.decision == "ask" and not set(rule.approvers) & available:
            findings.append(
                Finding(
                    rule.where,
                    f"ask with no approver able to answer "
                    f"(rule allows {list(rule.approvers)}, "
                    f"available: {sorted(available)})",
                )
            )
        if rule.decision != "deny":
            constrained = {c.param for c in rule.constraints}
            for action in sorted(rule.actions):
                open_ = [p for p in catalog[action].argv_params if p not in constrained]
                if open_:
                    findings.append(
                        Finding(
                            rule.where,
                            f"{action}: params {open_} reach the program as its own arguments, "
                            "options included, and this rule does not constrain them "
                            f"(e.g. params.{open_[0]} = [...] or {{ one_of = [...] }})",
                        )
                    )
        if rule.decision == "allow" and rule.source in (ANY, ANYVM):
            mutating = sorted(a for a in rule.actions if catalog[a].mutating)
            if mutating:
                findings.append(
                    Finding(
                        rule.where,
                        f"allows mutating actions {mutating} for every source ({rule.source!r})",
                    )
                )
        for field, value in (
            ("source", rule.source),
            ("target", rule.target),
            ("default_target", rule.default_target),
        ):
            if value is None:
                continue
            if NAME.match(value) and value not in names:
                findings.append(
                    Finding(
                        rule.where,
                        f"{field} names workload {value!r}, which is not in workloads.toml",
                    )
                )
            elif value.startswith(TAG) and value[len(TAG) :] not in tags:
                findings.append(Finding(rule.where, f"{field} {value!r}: no workload has this tag"))
    return findings
