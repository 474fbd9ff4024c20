"""The policy model: rules that remember where they were written, verdicts, the policy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol

import msgspec

Decision = Literal["allow", "ask", "deny"]
DEFAULT_RULE = "default"
#: A target pattern: a workload name, `*` (anything, also no target) or `@self`.
ANY = "*"
SELF = "@self"


class Constraint(Protocol):
    """A check on one param's value; compiled once at load."""

    @property
    def param(self) -> str: ...

    def matches(self, value: object) -> bool:
        """True when the value satisfies the constraint (a missing value never does)."""
        ...

    def describe(self) -> str:
        """A short human description, used by `policy explain`."""
        ...


class Rule(msgspec.Struct, frozen=True):
    """One compiled rule, with the file and line it came from."""

    index: int
    action: str
    source: str
    target: str
    decision: Decision
    constraints: tuple[Constraint, ...]
    timeout: float
    file: str
    line: int
    #: `file:line`, the rule's name in replies and audit records.
    where: str = ""

    def __post_init__(self) -> None:
        if not self.where:
            msgspec.structs.force_setattr(self, "where", f"{self.file}:{self.line}")


class Verdict(msgspec.Struct, frozen=True):
    """The outcome of evaluation: a decision and the rule that made it (None = default)."""

    decision: Decision
    rule: Rule | None

    @property
    def rule_name(self) -> str:
        """The deciding rule's `file:line`, or `default` when no rule matched."""
        return self.rule.where if self.rule is not None else DEFAULT_RULE


DEFAULT_DENY = Verdict(decision="deny", rule=None)


class Policy(msgspec.Struct, frozen=True):
    """A complete, compiled policy. Never partially built: construction is all or nothing.

    `by_action` holds, for every known action, the rules that can apply to it in file
    order, so evaluation never scans rules for other actions.
    """

    rules: tuple[Rule, ...]
    files: tuple[str, ...]
    by_action: Mapping[str, tuple[Rule, ...]]
    error: str | None = None

    @classmethod
    def deny_all(cls, reason: str) -> Policy:
        """The policy in force when none could be loaded: no rules, so everything is denied."""
        return cls(rules=(), files=(), by_action={}, error=reason)
