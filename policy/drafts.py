"""What the parsers produce: rules, tests and groups as written, with their positions."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from .model import Decision


class RuleSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A rule exactly as written (a TOML `[[rule]]` table, or one `.policy` line)."""

    #: An action, `@group` or `*`; or a list of those.
    action: str | list[str]
    source: str
    target: str
    decision: Decision
    params: dict[str, Any] = {}
    #: Seconds (`60`) or a duration (`"30s"`, `"2m"`); checked by the compiler.
    timeout: float | str = 120.0
    rate: str | None = None
    default_target: str | None = None
    approvers: list[str] | None = None
    #: What an approval may grant: once, a duration such as 30m, or always.
    grant: str = "once"
    #: How many distinct approvers must allow.
    quorum: Annotated[int, msgspec.Meta(ge=1, le=5)] = 1
    #: qrexec's `+ARGUMENT`: an exact match on the action's primary param.
    arg: str | None = None


class TestSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A `[[test]]` table exactly as written."""

    source: str
    action: str
    expect: Decision
    target: str | None = None
    params: dict[str, Any] = {}
    rule: str | None = None


class Positioned(msgspec.Struct, frozen=True):
    """Where a draft was written: its file and line, and each key's (line, column)."""

    file: str
    line: int
    keys: dict[str, tuple[int, int]]

    def pos(self, key: str) -> tuple[int, int]:
        """(line, column) of `key` (or of its first dotted part), else of the draft."""
        if key in self.keys:
            return self.keys[key]
        return self.keys.get(key.split(".", 1)[0], (self.line, 1))


class RuleDraft(msgspec.Struct, frozen=True):
    """A parsed rule and its position."""

    spec: RuleSpec
    at: Positioned


class TestDraft(msgspec.Struct, frozen=True):
    """A parsed test and its position."""

    spec: TestSpec
    at: Positioned


class GroupDraft(msgspec.Struct, frozen=True):
    """A group definition `NAME = [actions]` and its position."""

    name: str
    members: list[str]
    at: Positioned


class FileDraft(msgspec.Struct):
    """Everything one policy file holds, in order."""

    rules: list[RuleDraft] = msgspec.field(default_factory=list)
    tests: list[TestDraft] = msgspec.field(default_factory=list)
    groups: list[GroupDraft] = msgspec.field(default_factory=list)
