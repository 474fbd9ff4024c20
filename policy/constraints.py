"""Param constraints: parsed from a rule's `params` table and compiled once."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import msgspec

from .catalog import ParamKind
from .model import Constraint


class Exact(msgspec.Struct, frozen=True):
    """The value equals the given one (same type: 1 is not "1", True is not 1)."""

    param: str
    value: str | int | bool

    def matches(self, value: object) -> bool:
        return type(value) is type(self.value) and value == self.value

    def describe(self) -> str:
        return f"{self.param} == {self.value!r}"


class Glob(msgspec.Struct, frozen=True):
    """Shell-style glob over the whole string, case-sensitive (`*`, `?`, `[...]`)."""

    param: str
    pattern: str
    compiled: re.Pattern[str]

    def matches(self, value: object) -> bool:
        return isinstance(value, str) and self.compiled.fullmatch(value) is not None

    def describe(self) -> str:
        return f"{self.param} matches glob {self.pattern!r}"


class ConstraintSpec(msgspec.Struct, forbid_unknown_fields=True):
    """A constraint written as a table: exactly one key, naming the kind."""

    glob: str | None = None


def parse_constraint(param: str, kind: ParamKind, spec: Any) -> Constraint:
    """Build a constraint from its TOML value; raises ValueError with the reason."""
    if isinstance(spec, dict):
        table = msgspec.convert(spec, ConstraintSpec)
        if table.glob is None:
            raise ValueError("a constraint table needs exactly one of: glob")
        if kind != "str":
            raise ValueError(f"glob needs a string param, {param!r} is {kind}")
        return Glob(
            param=param, pattern=table.glob, compiled=re.compile(fnmatch.translate(table.glob))
        )
    if isinstance(spec, bool):
        if kind != "bool":
            raise ValueError(f"{param!r} is {kind}, not bool")
        return Exact(param=param, value=spec)
    if isinstance(spec, int):
        if kind != "int":
            raise ValueError(f"{param!r} is {kind}, not int")
        return Exact(param=param, value=spec)
    if isinstance(spec, str):
        if kind != "str":
            raise ValueError(f"{param!r} is {kind}, not str")
        return Exact(param=param, value=spec)
    raise ValueError(f"constraint on {param!r} must be a string, number, bool or table")
