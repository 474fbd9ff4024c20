"""Turn rule drafts into a Policy: check every rule against the catalogue, index by action."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .catalog import Catalog
from .constraints import parse_constraint
from .errors import PolicyError
from .model import ANY, SELF, Constraint, Policy, Rule
from .parse_toml import RuleDraft

_WORKLOAD = re.compile(r"^[a-zA-Z0-9-]{1,64}$")


def compile_policy(
    drafts: Iterable[RuleDraft], catalog: Catalog, files: Iterable[str] = ()
) -> Policy:
    """Check and index the drafts (in order). Raises PolicyError on the first bad rule."""
    rules: list[Rule] = []
    for index, d in enumerate(drafts):
        rules.append(_compile_rule(index, d, catalog))
    by_action = {name: tuple(r for r in rules if r.action in (name, ANY)) for name in catalog}
    return Policy(rules=tuple(rules), files=tuple(files), by_action=by_action)


def _compile_rule(index: int, d: RuleDraft, catalog: Catalog) -> Rule:
    s = d.spec

    def fail(key: str, message: str) -> PolicyError:
        return PolicyError(d.file, d.line_of(key), 1, message)

    if s.action != ANY and s.action not in catalog:
        raise fail("action", f"unknown action {s.action!r}")
    if s.source != ANY and not _WORKLOAD.match(s.source):
        raise fail("source", f"source must be a workload name or '*', not {s.source!r}")
    if s.target not in (ANY, SELF) and not _WORKLOAD.match(s.target):
        raise fail("target", f"target must be a workload name, '*' or '@self', not {s.target!r}")
    constraints: list[Constraint] = []
    if s.params:
        if s.action == ANY:
            raise fail("params", "a rule for action '*' cannot constrain params")
        info = catalog[s.action]
        for param, spec in s.params.items():
            kind = info.params.get(param)
            if kind is None:
                known = ", ".join(sorted(info.params)) or "none"
                raise fail(
                    f"params.{param}",
                    f"action {s.action!r} has no param {param!r} (it has: {known})",
                )
            try:
                constraints.append(parse_constraint(param, kind, spec))
            except (ValueError, TypeError) as exc:
                raise fail(f"params.{param}", f"param {param!r}: {exc}") from None
    return Rule(
        index=index,
        action=s.action,
        source=s.source,
        target=s.target,
        decision=s.decision,
        constraints=tuple(constraints),
        timeout=s.timeout,
        file=d.file,
        line=d.line,
    )
