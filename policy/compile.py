"""Turn drafts into a Policy: expand groups, check every rule against the catalogue, index.

Every problem is a PolicyError naming the file, line and column where it was written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from .catalog import Catalog, ParamType
from .constraints import Exact, parse_constraint
from .drafts import FileDraft, GroupDraft, Positioned, RuleDraft, RuleSpec, TestDraft
from .errors import PolicyError
from .model import APPROVERS, Constraint, Policy, PolicyTest, Rule, Workloads
from .quantities import parse_grant, parse_rate, parse_timeout
from .subjects import ANY, NAME, SELF, source_error, source_matches, target_error

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
            raise PolicyError(
                g.at.file,
                g.at.line,
                1,
                f"group name must be a letter, then letters, digits, '_' or '-' (at most 64), "
                f"not {g.name!r}",
            )
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


def _actions(
    spec: str | list[str], catalog: Catalog, groups: Mapping[str, frozenset[str]]
) -> frozenset[str] | str:
    """The actions a rule names (one spec or a list of them), or why not."""
    specs = [spec] if isinstance(spec, str) else spec
    if not specs:
        return "action lists no actions"
    found: set[str] = set()
    for one in specs:
        actions = expand_action(one, catalog, groups)
        if actions is None:
            return f"unknown action or group {one!r}"
        found |= actions
    return frozenset(found)


def _check_targets(
    s: RuleSpec, actions: frozenset[str], catalog: Catalog
) -> tuple[str, str] | None:
    """(key, why) when the rule's target or default_target cannot mean what it says."""
    if s.target == SELF and not any(catalog[a].runs_on_sender for a in actions):
        return "target", (
            f"target '@self' never matches {_listed(actions)}: it acts on no workload, so "
            "its intents name no target; use target = '*' (or '@default')"
        )
    if s.default_target is None:
        return None
    if not NAME.match(s.default_target):
        return "default_target", (
            "default_target must be a workload name: letters, digits and '-', "
            f"not {s.default_target!r}"
        )
    if s.decision == "deny":
        return "default_target", "default_target means nothing on a deny rule"
    if s.target == SELF:
        # `@self` says the intent acts on its sender; a default_target elsewhere would
        # let any sender's untargeted intent act on that other workload.
        return "default_target", (
            "default_target cannot go with target = '@self': an intent that names no "
            "target runs on its sender; use target = '@default' to send those elsewhere"
        )
    if NAME.match(s.target) and s.target != s.default_target:
        return "default_target", (
            f"default_target {s.default_target!r} is not the rule's target {s.target!r}: "
            "an intent naming no target is decided as if it named its default_target, "
            "so this rule would never send one there"
        )
    return None


def _listed(actions: frozenset[str]) -> str:
    return ", ".join(sorted(actions))


def _compile_rule(
    index: int, d: RuleDraft, catalog: Catalog, groups: Mapping[str, frozenset[str]]
) -> Rule:
    s, at = d.spec, d.at

    def fail(key: str, message: str) -> PolicyError:
        line, col = at.pos(key)
        return PolicyError(at.file, line, col, message)

    found = _actions(s.action, catalog, groups)
    if isinstance(found, str):
        raise fail("action", found)
    actions = found
    err = source_error(s.source)
    if err:
        raise fail("source", err)
    err = target_error(s.target)
    if err:
        raise fail("target", err)
    wrong = _check_targets(s, actions, catalog)
    if wrong:
        raise fail(*wrong)
    try:
        timeout = parse_timeout(s.timeout)
    except ValueError as exc:
        raise fail("timeout", str(exc)) from None
    constraints: list[Constraint] = []
    for param, value in s.params.items():
        kinds = {catalog[a].types.get(param) for a in actions}
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
        kind = kinds.pop()
        assert kind is not None
        try:
            constraints.append(parse_constraint(param, kind, value))
        except ValueError as exc:
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
        types = {catalog[a].types[primary] for a in actions}
        try:
            constraints.append(_arg(primary, types, s.arg))
        except ValueError as exc:
            raise fail("arg", str(exc)) from None
    rate = None
    if s.rate is not None:
        try:
            rate = parse_rate(s.rate)
        except ValueError as exc:
            raise fail("rate", str(exc)) from None
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
        action=s.action if isinstance(s.action, str) else ", ".join(s.action),
        actions=actions,
        source=s.source,
        target=s.target,
        decision=s.decision,
        constraints=tuple(constraints),
        timeout=timeout,
        rate=rate,
        default_target=s.default_target,
        approvers=approvers,
        grant=s.grant,
        grant_max=grant_max,
        quorum=s.quorum,
        file=at.file,
        line=at.line,
    )


def _arg(param: str, types: set[ParamType], arg: str) -> Constraint:
    """qrexec's `+ARGUMENT`: an exact match on the primary param, as its type reads it."""
    if len(types) != 1:
        raise ValueError(f"+ARGUMENT: {param!r} has different types in these actions")
    t = types.pop()
    if t.kind == "list" and t.item == "str":
        return Exact(param=param, value=(arg,))  # the list of that one element
    if t.kind == "str":
        return Exact(param=param, value=arg)
    if t.kind == "int" and arg.lstrip("-").isdigit():
        return parse_constraint(param, t, int(arg))
    raise ValueError(f"+ARGUMENT {arg!r} is not a {t.describe()}, which {param!r} is")


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
