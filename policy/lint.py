"""Warnings about a policy that loads: unreachable rules, asks nobody can answer, wide allows."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from .catalog import Catalog
from .model import Policy, Rule, Workloads
from .subjects import ANY, ANYVM, DEFAULT, NAME, TAG


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


def shadows(first: Rule, later: Rule, workloads: Workloads) -> bool:
    """True when `first` matches every request `later` matches, so `later` never decides."""
    if not later.actions <= first.actions:
        return False
    if not _source_covers(first.source, later.source, workloads):
        return False
    if not _target_covers(first.target, later.target, workloads):
        return False
    later_constraints = {(c.param, c.describe()) for c in later.constraints}
    return all((c.param, c.describe()) in later_constraints for c in first.constraints)


def lint(policy: Policy, catalog: Catalog, approvers_available: Iterable[str]) -> list[Finding]:
    """Every warning for `policy`, in rule order."""
    available = set(approvers_available)
    findings: list[Finding] = []
    names = set(policy.workloads)
    tags = {t for ts in policy.workloads.values() for t in ts}
    for i, rule in enumerate(policy.rules):
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
