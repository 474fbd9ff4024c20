"""The policy model: rules that remember where they were written, rulings, the policy."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import msgspec

Decision = Literal["allow", "ask", "deny"]
DECISIONS: tuple[Decision, ...] = ("allow", "ask", "deny")
DEFAULT_RULE = "default"
APPROVERS = ("desktop", "telegram", "cli", "web")

#: Workload names to their tags, as the policy is compiled against them.
Workloads = Mapping[str, frozenset[str]]


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


class Rate(msgspec.Struct, frozen=True):
    """At most `count` matches per `per` seconds, per source workload (a token bucket)."""

    count: int
    per: float
    text: str


class Rule(msgspec.Struct, frozen=True, kw_only=True):
    """One compiled rule, with the file and line it came from."""

    index: int
    action: str
    actions: frozenset[str]
    source: str
    target: str
    decision: Decision
    constraints: tuple[Constraint, ...] = ()
    timeout: float = 120.0
    rate: Rate | None = None
    default_target: str | None = None
    approvers: tuple[str, ...] = APPROVERS
    #: What an approval may grant, as written, and as seconds (0 once, inf always).
    grant: str = "once"
    grant_max: float = 0.0
    quorum: int = 1
    file: str
    line: int
    #: `file:line`, the rule's name in replies and audit records.
    where: str = ""
    #: `file:line` plus a hash of everything the rule says: prompts and grants are keyed
    #: by it, so an edited rule (same line, other content) is another rule.
    identity: str = ""
    #: The ruling this rule gives, built once.
    ruling: Any = None

    def __post_init__(self) -> None:
        if not self.where:
            msgspec.structs.force_setattr(self, "where", f"{self.file}:{self.line}")
        if not self.identity:
            msgspec.structs.force_setattr(self, "identity", f"{self.where}#{self._content_hash()}")
        msgspec.structs.force_setattr(self, "ruling", Ruling(decision=self.decision, rule=self))

    def _content_hash(self) -> str:
        content = "\x1f".join(
            [
                self.action,
                ",".join(sorted(self.actions)),
                self.source,
                self.target,
                self.decision,
                *(c.describe() for c in self.constraints),
                repr(self.timeout),
                self.rate.text if self.rate is not None else "",
                self.default_target or "",
                ",".join(self.approvers),
                self.grant,
                str(self.quorum),
            ]
        )
        return hashlib.sha256(content.encode()).hexdigest()[:16]


class Ruling(msgspec.Struct, frozen=True):
    """The outcome of evaluation: a decision and the rule that made it (None = default)."""

    decision: Decision
    rule: Rule | None

    @property
    def rule_name(self) -> str:
        """The deciding rule's `file:line`, or `default` when no rule matched."""
        return self.rule.where if self.rule is not None else DEFAULT_RULE


DEFAULT_DENY = Ruling(decision="deny", rule=None)


class PolicyTest(msgspec.Struct, frozen=True, kw_only=True):
    """A `[[test]]` table: a request and the decision (and optionally the rule) it must get."""

    source: str
    action: str
    target: str | None
    params: dict[str, Any]
    expect: Decision
    rule: str | None
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    """A complete, compiled policy. Never partially built: construction is all or nothing.

    `index` holds, for every known (action, source workload), the rules that can apply
    in file order; `by_action` is the fallback for sources the policy was not compiled
    against.
    """

    rules: tuple[Rule, ...]
    files: tuple[str, ...]
    groups: Mapping[str, frozenset[str]] = {}
    workloads: Workloads = {}
    index: Mapping[tuple[str, str], tuple[Rule, ...]] = {}
    by_action: Mapping[str, tuple[Rule, ...]] = {}
    tests: tuple[PolicyTest, ...] = ()
    #: Actions that run on their sender when the intent names no target.
    sender_actions: frozenset[str] = frozenset()
    #: Each file's name and text as loaded: what `reload --diff` compares the disk with.
    sources: tuple[tuple[str, str], ...] = ()
    error: str | None = None

    @classmethod
    def deny_all(cls, reason: str) -> Policy:
        """The policy in force when none could be loaded: no rules, so everything is denied."""
        return cls(rules=(), files=(), error=reason)
