"""Turn drafts into a Policy: expand groups, check every rule against the catalogue, index.

Every problem is a PolicyError naming the file, line and column where it was written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from .catalog import Catalog
from .constraints import Exact, parse_constraint
from .drafts import FileDraft, GroupDraft, Positioned, RuleDraft, TestDraft
from .errors import PolicyError
from .model import APPROVERS, Constraint, Policy, PolicyTest, Rule, Workloads
from .subjects import ANY, NAME, SELF, source_error, source_matches, target_error
from .units import parse_grant, parse_rate

BUILTIN_GROUPS = ("readonly", "mutating")
_GROUP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


def compile_groups(groups: Iterable[GroupDraft], catalog: Catalog) -> dict[str, frozenset[str]]:
    """Check group definitions and add the built-in `readonly` and `mutating`."""
    out: dict[str, frozenset[str]] = {
        "readonly": frozenset(a for a, i in catalog.items() if not i.mutating),
        "mutating": frozenset(a for a, i in catalog.items() if i.mutating),
    }
    seen: dict[str, Positioned] = {}
    for g in groups:
        if not _GROUP_NAME.match(g.name):
            raise PolicyError(g.at.file, g.at.line, 1, f"bad group name {g.name!r}")
        if g.name in BUILTIN_GROUPS or g.name in catalog:
            raise PolicyError(
                g.at.file,
                g.at.line,
                1,
                f"group {g.name!r} would hide a built-in group or an action",
            )
        if g.name in seen:
            first = seen[g.name]
            raise PolicyError(
                g.at.file,
                g.at.line,
                1,
                f"group {g.name!r} already defined at {first.file}:{first.line}",
            )
        unknown = [m for m in g.members if m not in catalog]
        if unknown:
            raise PolicyError(
                g.at.file, g.at.line, 1, f"group {g.name!r} names unknown actions {unknown}"
            )
        if not g.members:
            raise PolicyError(g.at.file, g.at.line, 1, f"group {g.name!r} is empty")
        seen[g.name] = g.at
        out[g.name] = frozenset(g.members)
    return out


def expand_action(
    spec: str, catalog: Catalog, groups: Mapping[str, frozenset[str]]
) -> frozenset[str] | None:
    """The actions a rule's action field names: an action, `@group`, a bare group, `*`."""
    if spec == ANY:
        return frozenset(catalog)
    if spec in catalog:
        return frozenset({spec})
    name = spec[1:] if spec.startswith("@") else spec
    return groups.get(name)


def _compile_rule(
    index: int, d: RuleDraft, catalog: Catalog, groups: Mapping[str, frozenset[str]]
) -> Rule:
    s, at = d.spec, d.at

    def fail(key: str, message: str) -> PolicyError:
        line, col = at.pos(key)
        return PolicyError(at.file, line, col, message)

    actions = expand_action(s.action, catalog, groups)
    if actions is None:
        raise fail("action", f"unknown action or group {s.action!r}")
    err = source_error(s.source)
    if err:
        raise fail("source", err)
    err = target_error(s.target)
    if err:
        raise fail("target", err)
    constraints: list[Constraint] = []
    for param, value in s.params.items():
        kinds = {catalog[a].params.get(param) for a in actions}
        if None in kinds:
            lacking = sorted(a for a in actions if param not in catalog[a].params)
            raise fail(
                f"params.{param}",
                f"param {param!r} is not a param of {lacking} "
                f"(it has: {_params_of(catalog, lacking[0])})",
            )
        if len(kinds) > 1:
            raise fail(
                f"params.{param}", f"param {param!r} has different kinds in {sorted(actions)}"
            )
        try:
            constraints.append(parse_constraint(param, kinds.pop(), value))  # type: ignore[arg-type]
        except (ValueError, TypeError) as exc:
            raise fail(f"params.{param}", f"param {param!r}: {exc}") from None
    if s.arg is not None:
        primaries = {catalog[a].primary for a in actions}
        if None in primaries or len(primaries) != 1:
            raise fail(
                "arg",
                f"+ARGUMENT needs actions sharing one primary param; {sorted(actions)} do not",
            )
        primary = primaries.pop()
        assert primary is not None
        constraints.append(Exact(param=primary, value=s.arg))
    rate = None
    if s.rate is not None:
        try:
            rate = parse_rate(s.rate)
        except ValueError as exc:
            raise fail("rate", str(exc)) from None
    if s.default_target is not None:
        if not NAME.match(s.default_target):
            raise fail(
                "default_target",
                f"default_target must be a workload name, not {s.default_target!r}",
            )
        if s.decision == "deny":
            raise fail("default_target", "default_target means nothing on a deny rule")
        if s.target == SELF:
            # `@self` says the intent acts on its sender; a default_target elsewhere would
            # let any sender's untargeted intent act on that other workload.
            raise fail(
                "default_target",
                "default_target cannot go with target = '@self': an intent that names no "
                "target runs on its sender; use target = '@default' to send those elsewhere",
            )
    try:
        grant_max = parse_grant(s.grant)
    except ValueError as exc:
        raise fail("grant", str(exc)) from None
    if s.decision != "ask" and (s.grant != "once" or s.quorum != 1):
        raise fail(
            "grant" if s.grant != "once" else "quorum",
            "grant and quorum only mean something on an ask rule",
        )
    approvers = tuple(s.approvers) if s.approvers is not None else APPROVERS
    bad = [a for a in approvers if a not in APPROVERS]
    if bad:
        raise fail("approvers", f"unknown approvers {bad} (known: {', '.join(APPROVERS)})")
    return Rule(
        index=index,
        action=s.action,
        actions=actions,
        source=s.source,
        target=s.target,
        decision=s.decision,
        constraints=tuple(constraints),
        timeout=s.timeout,
        rate=rate,
        default_target=s.default_target,
        approvers=approvers,
        grant=s.grant,
        grant_max=grant_max,
        quorum=s.quorum,
        file=at.file,
        line=at.line,
    )


def _params_of(catalog: Catalog, action: str) -> str:
    return ", ".join(sorted(catalog[action].params)) or "none"


def _compile_test(d: TestDraft, catalog: Catalog) -> PolicyTest:
    s, at = d.spec, d.at

    def fail(key: str, message: str) -> PolicyError:
        line, col = at.pos(key)
        return PolicyError(at.file, line, col, message)

    if s.action not in catalog:
        raise fail("action", f"test names unknown action {s.action!r}")
    if not NAME.match(s.source):
        raise fail("source", f"a test's source must be a workload name, not {s.source!r}")
    if s.target is not None and not NAME.match(s.target):
        raise fail("target", f"a test's target must be a workload name, not {s.target!r}")
    return PolicyTest(
        source=s.source,
        action=s.action,
        target=s.target,
        params=s.params,
        expect=s.expect,
        rule=s.rule,
        file=at.file,
        line=at.line,
    )


def build_index(
    rules: tuple[Rule, ...], catalog: Catalog, workloads: Workloads
) -> tuple[dict[str, tuple[Rule, ...]], dict[tuple[str, str], tuple[Rule, ...]]]:
    """Rules per action, and per (action, source workload), in file order."""
    by_action = {a: tuple(r for r in rules if a in r.actions) for a in catalog}
    index = {
        (a, w): tuple(r for r in candidates if source_matches(r.source, w, workloads))
        for a, candidates in by_action.items()
        for w in workloads
    }
    return by_action, index


def compile_policy(
    files: Iterable[FileDraft], catalog: Catalog, workloads: Workloads, names: Iterable[str] = ()
) -> Policy:
    """Check and index every file's drafts (in order). Raises PolicyError on the first fault."""
    files = list(files)
    groups = compile_groups((g for f in files for g in f.groups), catalog)
    rules = tuple(
        _compile_rule(i, d, catalog, groups)
        for i, d in enumerate(d for f in files for d in f.rules)
    )
    tests = tuple(_compile_test(t, catalog) for f in files for t in f.tests)
    frozen_workloads = MappingProxyType({w: frozenset(t) for w, t in workloads.items()})
    by_action, index = build_index(rules, catalog, frozen_workloads)
    return Policy(
        rules=rules,
        files=tuple(names),
        groups=MappingProxyType(groups),
        workloads=frozen_workloads,
        index=MappingProxyType(index),
        by_action=MappingProxyType(by_action),
        tests=tests,
        sender_actions=frozenset(a for a, info in catalog.items() if info.runs_on_sender),
    )
