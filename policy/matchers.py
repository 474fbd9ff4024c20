"""Param constraints as compiled at load: each checks one param's value.

A constraint never matches a missing value or a value of the wrong type. On a list param
an element constraint (`each`) must match every element, and never matches an empty
list; an exact list value must equal the whole list.
"""

from __future__ import annotations

import re
from typing import ClassVar

import msgspec

from .hosts import host_of, inside, normalise_path
from .patterns.syntax import Node

Scalar = str | int | bool


def _each(value: object, each: bool) -> list[object] | None:
    """The values a constraint checks: the value itself, or each element of a list."""
    if each:
        if not isinstance(value, (list, tuple)) or not value:
            return None
        return list(value)
    return [value]


def _subject(param: str, each: bool) -> str:
    return f"each of {param}" if each else param


def _same(a: object, b: object) -> bool:
    # Type-strict: 1 is not "1", True is not 1.
    return type(a) is type(b) and a == b


class Exact(msgspec.Struct, frozen=True):
    """The value equals the given one, same type; a list equals element by element."""

    param: str
    value: Scalar | tuple[Scalar, ...]

    def matches(self, value: object) -> bool:
        if isinstance(self.value, tuple):
            return (
                isinstance(value, (list, tuple))
                and len(value) == len(self.value)
                and all(_same(v, w) for v, w in zip(value, self.value, strict=True))
            )
        return _same(value, self.value)

    def describe(self) -> str:
        shown = list(self.value) if isinstance(self.value, tuple) else self.value
        return f"{self.param} == {shown!r}"


class _Pattern(msgspec.Struct, frozen=True):
    """A compiled pattern that must match the whole value (each element, with `each`)."""

    kind: ClassVar[str]
    param: str
    pattern: str
    each: bool
    node: Node
    compiled: re.Pattern[str]

    def matches(self, value: object) -> bool:
        items = _each(value, self.each)
        return items is not None and all(
            isinstance(v, str) and self.compiled.fullmatch(v) is not None for v in items
        )

    def describe(self) -> str:
        return f"{_subject(self.param, self.each)} matches {self.kind} {self.pattern!r}"


class Glob(_Pattern, frozen=True):
    """A shell-style glob over the whole string, case-sensitive (on URLs: per part)."""

    kind: ClassVar[str] = "glob"


class Regex(_Pattern, frozen=True):
    """A regular expression (the supported subset) that must match the whole value."""

    kind: ClassVar[str] = "regex"


class Prefix(msgspec.Struct, frozen=True):
    """The value starts with the given text (case-sensitive)."""

    param: str
    prefix: str
    each: bool

    def matches(self, value: object) -> bool:
        items = _each(value, self.each)
        return items is not None and all(
            isinstance(v, str) and v.startswith(self.prefix) for v in items
        )

    def describe(self) -> str:
        return f"{_subject(self.param, self.each)} starts with {self.prefix!r}"


class OneOf(msgspec.Struct, frozen=True):
    """The value is one of a fixed set (type-strict)."""

    param: str
    values: frozenset[tuple[type, Scalar]]
    shown: tuple[Scalar, ...]
    each: bool

    def matches(self, value: object) -> bool:
        items = _each(value, self.each)
        return items is not None and all(
            isinstance(v, (str, int)) and (type(v), v) in self.values for v in items
        )

    def describe(self) -> str:
        return f"{_subject(self.param, self.each)} is one of {list(self.shown)!r}"


class IntRange(msgspec.Struct, frozen=True):
    """An integer within [low, high], inclusive (booleans are not integers here)."""

    param: str
    low: int
    high: int
    each: bool = False

    def matches(self, value: object) -> bool:
        items = _each(value, self.each)
        return items is not None and all(
            type(v) is int and self.low <= v <= self.high for v in items
        )

    def describe(self) -> str:
        return f"{_subject(self.param, self.each)} in [{self.low}, {self.high}]"


class Domain(msgspec.Struct, frozen=True):
    """The host (of an http(s) URL or a host param) is one of the names; `*.name` = subdomains.

    `*.example.com` matches `a.example.com` and `a.b.example.com`, never `example.com`
    itself and never `evilexample.com`.
    """

    param: str
    exact: frozenset[str]
    suffixes: tuple[str, ...]
    shown: tuple[str, ...]
    each: bool

    def matches(self, value: object) -> bool:
        items = _each(value, self.each)
        if items is None:
            return False
        for v in items:
            if not isinstance(v, str):
                return False
            host = host_of(v)
            if host is None:
                return False
            if host in self.exact:
                continue
            if not any(host.endswith(s) and len(host) > len(s) for s in self.suffixes):
                return False
        return True

    def describe(self) -> str:
        return f"{_subject(self.param, self.each)} host is one of {list(self.shown)!r}"


class Under(msgspec.Struct, frozen=True):
    """The path is one of the bases or inside one (normalised; `..` never matches).

    An absolute base only matches absolute paths; a relative base only relative ones.
    """

    param: str
    bases: tuple[str, ...]
    each: bool

    def matches(self, value: object) -> bool:
        items = _each(value, self.each)
        if items is None:
            return False
        for v in items:
            if not isinstance(v, str):
                return False
            path = normalise_path(v)
            if path is None or not any(inside(path, b) for b in self.bases):
                return False
        return True

    def describe(self) -> str:
        return f"{_subject(self.param, self.each)} is under {list(self.bases)!r}"


#: Every constraint the compiler builds.
AnyConstraint = Exact | Glob | Regex | Prefix | OneOf | IntRange | Domain | Under
