"""What the policy needs to know about actions, handed in by the daemon.

The policy package does not import the executors: the daemon describes each action as
data (its params and their types, whether it mutates) and the compiler checks rules
against that description.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import msgspec

#: A param's kind as written by callers that only know the four words (the triggers).
ParamKind = Literal["str", "int", "bool", "list"]
Scalar = Literal["str", "int", "bool"]
#: What a string means, where the policy matches it by that meaning: a URL or host
#: (`domain`), a relative path (`under`), or plain text.
Format = Literal["text", "url", "host", "path"]


_MEANING = {
    "url": ("a URL", "URLs"),
    "host": ("a host name", "host names"),
    "path": ("a relative path", "relative paths"),
}


class ParamType(msgspec.Struct, frozen=True, kw_only=True):
    """One param's type as the decoder hands it to the policy.

    `kind` is `list` for a list, with `item` the kind of its elements; the other fields
    describe a string (or each string element) or an int, and what values exist at all.
    `format` None means undescribed (a caller outside the catalogue): no constraint is
    refused for its meaning.
    """

    kind: Literal["str", "int", "bool", "list"]
    item: Scalar | None = None
    format: Format | None = "text"
    #: The value may be absent (an optional param with no default).
    optional: bool = False
    #: Integer bounds (of the value, or of each element).
    low: int | None = None
    high: int | None = None
    #: String length bounds and a whole-string pattern (of the value or each element).
    min_length: int = 0
    max_length: int | None = None
    pattern: str | None = None
    #: List length bounds.
    min_items: int = 0
    max_items: int | None = None
    #: What the decoder fills in when the param is not given (None: nothing, or no default).
    default: str | int | bool | tuple[str, ...] | tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if (self.kind == "list") != (self.item is not None):
            raise ValueError("a list param needs an item kind, and only a list has one")

    @classmethod
    def loose(cls, kind: ParamKind) -> ParamType:
        """A type known only by its kind word (`list` is a list of strings)."""
        if kind == "list":
            return cls(kind="list", item="str", format=None)
        return cls(kind=kind, format=None)

    @property
    def scalar(self) -> Scalar:
        """The kind of the value, or of each element of a list."""
        if self.item is not None:
            return self.item
        assert self.kind != "list"
        return self.kind

    def describe(self) -> str:
        """The type in words: `int`, `str (a URL)`, `list of str (relative paths)`, ..."""
        meaning = _MEANING.get(self.format or "text") if self.scalar == "str" else None
        if self.kind != "list":
            return f"str ({meaning[0]})" if meaning else self.scalar
        return f"list of {self.scalar}" + (f" ({meaning[1]})" if meaning else "")


class ActionInfo(msgspec.Struct, frozen=True):
    """One action as the policy sees it."""

    name: str
    #: Each param's type, from the executor's `Params` Struct.
    types: Mapping[str, ParamType]
    mutating: bool
    primary: str | None = None
    #: The action acts on a workload, its sender when the intent names none (`@self`
    #: matches that); False for actions that act on no workload (`status`, `notify`).
    runs_on_sender: bool = False
    #: Params whose words become a program's arguments as given, options included
    #: (`run-ops` args): a rule that lets them through unconstrained is warned about.
    argv_params: tuple[str, ...] = ()

    @property
    def params(self) -> Mapping[str, ParamKind]:
        """Each param's kind word: `str`, `int`, `bool` or `list`."""
        return {name: t.kind for name, t in self.types.items()}


Catalog = Mapping[str, ActionInfo]
