"""Param constraints, parsed from a rule's `params` table and checked against the param's type.

Written in TOML as a bare value (exact match) or a one-key table naming the kind::

    url   = { domain = ["example.org", "*.example.org"] }
    query = { regex = "[a-z ]{1,40}" }          # anchored: the whole value must match
    port  = { range = [1024, 65535] }
    paths = { under = "exports" }               # list params: every element must match
    args  = ["origin", "main"]                  # a list param: exactly this list

A constraint that cannot apply to the param's type is refused here, with the reason in
words; what it then matches is in `matchers`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .catalog import ParamKind, ParamType
from .hosts import normalise_domain, normalise_path
from .languages import PatternError, url_glob, url_prefix
from .matchers import (
    AnyConstraint,
    Domain,
    Exact,
    Glob,
    IntRange,
    OneOf,
    Prefix,
    Regex,
    Scalar,
    Under,
)
from .patterns.glob import parse_glob
from .patterns.regex import RegexError, parse_regex
from .patterns.syntax import alt, compile_node

__all__ = ["ConstraintSpec", "Exact", "parse_constraint"]

_PY: dict[str, type] = {"str": str, "int": int, "bool": bool}


class ConstraintSpec(msgspec.Struct, forbid_unknown_fields=True):
    """A constraint written as a table: exactly one key, naming the kind."""

    glob: str | list[str] | None = None
    regex: str | None = None
    prefix: str | None = None
    domain: str | list[str] | None = None
    range: tuple[int, int] | None = None
    one_of: list[str | int | bool] | None = None
    under: str | list[str] | None = None


_KINDS = ", ".join(ConstraintSpec.__struct_fields__)


def _as_list(v: str | list[str]) -> list[str]:
    return [v] if isinstance(v, str) else list(v)


def _is(value: object, scalar: str) -> bool:
    return type(value) is _PY[scalar]


def _check_int(param: str, t: ParamType, value: int) -> None:
    if t.low is not None and value < t.low:
        raise ValueError(f"{param} is at least {t.low}, so {value} never matches")
    if t.high is not None and value > t.high:
        raise ValueError(f"{param} is at most {t.high}, so {value} never matches")


def parse_constraint(param: str, kind: ParamType | ParamKind, spec: Any) -> AnyConstraint:
    """Build a constraint from its TOML value; raises ValueError with the reason in words."""
    t = kind if isinstance(kind, ParamType) else ParamType.loose(kind)
    if isinstance(spec, dict):
        try:
            table = msgspec.convert(spec, ConstraintSpec)
        except msgspec.ValidationError as exc:
            raise ValueError(f"{exc} (a constraint table takes one of: {_KINDS})") from None
        return _parse_table(param, t, table)
    if isinstance(spec, list):
        return _exact_list(param, t, spec)
    if isinstance(spec, (bool, int, str)):
        if t.kind == "list":
            raise ValueError(
                f"{param} is a {t.describe()}: give the whole list "
                f"({param} = [{spec!r}]) or a constraint on each element "
                f"({param} = {{ one_of = [...] }})"
            )
        if not _is(spec, t.kind):
            raise ValueError(
                f"{param} is {t.describe()}, so {type(spec).__name__} {spec!r} never matches"
            )
        if isinstance(spec, int) and not isinstance(spec, bool):
            _check_int(param, t, spec)
        return Exact(param=param, value=spec)
    raise ValueError(f"constraint on {param!r} must be a value, a list or a table")


def _exact_list(param: str, t: ParamType, values: list[Any]) -> Exact:
    if t.kind != "list" or t.item is None:
        raise ValueError(
            f"{param} is {t.describe()}, not a list; for one of several values write "
            f"{param} = {{ one_of = [...] }}"
        )
    wrong = [v for v in values if not _is(v, t.item)]
    if wrong:
        raise ValueError(f"{param} is a {t.describe()}: {wrong!r} are not {t.item}")
    items: tuple[Scalar, ...] = tuple(values)
    return Exact(param=param, value=items)


def _need(t: ParamType, param: str, what: str, scalars: tuple[str, ...]) -> None:
    if t.scalar not in scalars:
        raise ValueError(f"{what} cannot constrain {param!r}, which is {t.describe()}")


def _parse_table(param: str, t: ParamType, s: ConstraintSpec) -> AnyConstraint:
    given = [f for f in ConstraintSpec.__struct_fields__ if getattr(s, f) is not None]
    if len(given) != 1:
        raise ValueError(f"a constraint table needs exactly one of: {_KINDS}")
    each = t.kind == "list"
    if s.glob is not None:
        return _glob(param, t, _as_list(s.glob), each)
    if s.regex is not None:
        _need(t, param, "regex", ("str",))
        try:
            node = parse_regex(s.regex)
        except RegexError as exc:
            raise ValueError(f"bad regex {s.regex!r}: {exc}") from None
        compiled = compile_node(node)
        return Regex(param=param, pattern=s.regex, each=each, node=node, compiled=compiled)
    if s.prefix is not None:
        _need(t, param, "prefix", ("str",))
        prefix = s.prefix
        if t.format == "url":
            try:
                prefix = url_prefix(prefix)
            except PatternError as exc:
                raise ValueError(str(exc)) from None
        return Prefix(param=param, prefix=prefix, each=each)
    if s.domain is not None:
        _need(t, param, "domain", ("str",))
        if t.format not in ("url", "host", None):
            raise ValueError(
                f"domain constrains the host of a URL or a host name; {param} is {t.describe()}"
            )
        return _domain(param, _as_list(s.domain), each)
    if s.range is not None:
        _need(t, param, "range", ("int",))
        low, high = s.range
        if low > high:
            raise ValueError(f"range [{low}, {high}] is empty")
        if (t.high is not None and low > t.high) or (t.low is not None and high < t.low):
            raise ValueError(
                f"{param} is between {t.low} and {t.high}, so [{low}, {high}] never matches"
            )
        return IntRange(param=param, low=low, high=high, each=each)
    if s.one_of is not None:
        return _one_of(param, t, s.one_of, each)
    assert s.under is not None
    _need(t, param, "under", ("str",))
    if t.format in ("url", "host"):
        raise ValueError(f"under constrains paths; {param} is {t.describe()}")
    bases: list[str] = []
    for base in _as_list(s.under):
        norm = normalise_path(base)
        if norm is None:
            raise ValueError(f"under: {base!r} is not a clean path (no '..', no NUL)")
        bases.append(norm)
    return Under(param=param, bases=tuple(bases), each=each)


def _glob(param: str, t: ParamType, globs: list[str], each: bool) -> Glob:
    _need(t, param, "glob", ("str",))
    if not globs:
        raise ValueError("glob needs at least one pattern")
    try:
        nodes = [url_glob(g) if t.format == "url" else parse_glob(g) for g in globs]
    except PatternError as exc:
        raise ValueError(str(exc)) from None
    node = alt(*nodes)
    shown = globs[0] if len(globs) == 1 else ", ".join(globs)
    return Glob(param=param, pattern=shown, each=each, node=node, compiled=compile_node(node))


def _one_of(param: str, t: ParamType, values: list[str | int | bool], each: bool) -> OneOf:
    if not values:
        raise ValueError("one_of needs at least one value")
    wrong = [v for v in values if not _is(v, t.scalar)]
    if wrong:
        raise ValueError(f"one_of values for {param!r} must be {t.scalar}: {wrong!r}")
    if t.scalar == "int":
        for v in values:
            assert isinstance(v, int)
            _check_int(param, t, v)
    return OneOf(
        param=param,
        values=frozenset((type(v), v) for v in values),
        shown=tuple(values),
        each=each,
    )


def _domain(param: str, names: list[str], each: bool) -> Domain:
    if not names:
        raise ValueError("domain needs at least one name")
    exact: set[str] = set()
    suffixes: list[str] = []
    for name in names:
        wildcard = name.startswith("*.")
        host = normalise_domain(name[2:] if wildcard else name)
        if host is None or "*" in name[2 if wildcard else 0 :]:
            raise ValueError(f"domain {name!r} is not a host name or '*.' followed by one")
        if wildcard:
            suffixes.append("." + host)
        else:
            exact.add(host)
    return Domain(
        param=param, exact=frozenset(exact), suffixes=tuple(suffixes), shown=tuple(names), each=each
    )
