"""Param constraints, parsed from a rule's `params` table and compiled once at load.

Written in TOML as a bare value (exact match) or a one-key table naming the kind::

    url   = { domain = ["example.org", "*.example.org"] }
    query = { regex = "[a-z ]{1,40}" }          # anchored: the whole value must match
    port  = { range = [1024, 65535] }
    paths = { under = "exports" }               # list params: every element must match

A constraint never matches a missing value, a value of the wrong type or an empty list.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any
from urllib.parse import urlsplit

import msgspec

from .catalog import ParamKind
from .model import Constraint

_HOST_CHARS = re.compile(r"^[a-z0-9.-]+$")
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_WEB_SCHEMES = ("http", "https")


def _each(value: object, kind: ParamKind) -> list[object] | None:
    """The values a constraint checks: the value itself, or each element of a list."""
    if kind == "list":
        if not isinstance(value, (list, tuple)) or not value:
            return None
        return list(value)
    return [value]


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
    kind: ParamKind
    compiled: re.Pattern[str]

    def matches(self, value: object) -> bool:
        items = _each(value, self.kind)
        return items is not None and all(
            isinstance(v, str) and self.compiled.fullmatch(v) is not None for v in items
        )

    def describe(self) -> str:
        return f"{self.param} matches glob {self.pattern!r}"


class Regex(msgspec.Struct, frozen=True):
    """A regular expression that must match the whole value (anchored at both ends)."""

    param: str
    pattern: str
    kind: ParamKind
    compiled: re.Pattern[str]

    def matches(self, value: object) -> bool:
        items = _each(value, self.kind)
        return items is not None and all(
            isinstance(v, str) and self.compiled.fullmatch(v) is not None for v in items
        )

    def describe(self) -> str:
        return f"{self.param} matches regex {self.pattern!r}"


class Prefix(msgspec.Struct, frozen=True):
    """The value starts with the given text (case-sensitive)."""

    param: str
    prefix: str
    kind: ParamKind

    def matches(self, value: object) -> bool:
        items = _each(value, self.kind)
        return items is not None and all(
            isinstance(v, str) and v.startswith(self.prefix) for v in items
        )

    def describe(self) -> str:
        return f"{self.param} starts with {self.prefix!r}"


class OneOf(msgspec.Struct, frozen=True):
    """The value is one of a fixed set (type-strict)."""

    param: str
    values: frozenset[tuple[type, object]]
    shown: tuple[object, ...]
    kind: ParamKind

    def matches(self, value: object) -> bool:
        items = _each(value, self.kind)
        return items is not None and all((type(v), v) in self.values for v in items)

    def describe(self) -> str:
        return f"{self.param} is one of {list(self.shown)!r}"


class IntRange(msgspec.Struct, frozen=True):
    """An integer within [low, high], inclusive (booleans are not integers here)."""

    param: str
    low: int
    high: int

    def matches(self, value: object) -> bool:
        return type(value) is int and self.low <= value <= self.high

    def describe(self) -> str:
        return f"{self.param} in [{self.low}, {self.high}]"


def normalise_domain(host: str) -> str | None:
    """Lower-case, one trailing dot dropped, IDNA-encoded; None if not a plausible host."""
    if not host or len(host) > 253 or host.startswith(".") or ".." in host:
        return None
    if host.endswith("."):
        host = host[:-1]
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    if not ascii_host or not _HOST_CHARS.match(ascii_host):
        return None
    return ascii_host


def host_of(value: str) -> str | None:
    """The normalised host of a URL or a bare host name; None when it cannot be trusted."""
    if _BAD_URL_CHARS.search(value):
        return None
    if "://" in value:
        parts = urlsplit(value)
        if parts.scheme.lower() not in _WEB_SCHEMES:
            return None  # javascript://host/... names a host but is not a request to it
        if "@" in parts.netloc:
            return None  # credentials would make the host ambiguous to a reader
        hostname = parts.hostname
        if hostname is None:
            return None
        return normalise_domain(hostname)
    if "/" in value or "@" in value or ":" in value:
        return None
    return normalise_domain(value)


class Domain(msgspec.Struct, frozen=True):
    """The host (of an http(s) URL or a host param) is one of the names; `*.name` = subdomains.

    `*.example.com` matches `a.example.com` and `a.b.example.com`, never `example.com`
    itself and never `evilexample.com`.
    """

    param: str
    exact: frozenset[str]
    suffixes: tuple[str, ...]
    shown: tuple[str, ...]
    kind: ParamKind

    def matches(self, value: object) -> bool:
        items = _each(value, self.kind)
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
        return f"{self.param} host is one of {list(self.shown)!r}"


def normalise_path(path: str) -> str | None:
    """`path` with repeated slashes and `.` removed; None if it has `..` or a NUL."""
    if not path or "\x00" in path:
        return None
    parts = path.split("/")
    if ".." in parts:
        return None
    absolute = path.startswith("/")
    kept = [p for p in parts if p not in ("", ".")]
    joined = "/".join(kept)
    return ("/" + joined) if absolute else (joined or ".")


class Under(msgspec.Struct, frozen=True):
    """The path is one of the bases or inside one (normalised; `..` never matches).

    An absolute base only matches absolute paths; a relative base only relative ones.
    """

    param: str
    bases: tuple[str, ...]
    kind: ParamKind

    def matches(self, value: object) -> bool:
        items = _each(value, self.kind)
        if items is None:
            return False
        for v in items:
            if not isinstance(v, str):
                return False
            path = normalise_path(v)
            if path is None or not any(_inside(path, b) for b in self.bases):
                return False
        return True

    def describe(self) -> str:
        return f"{self.param} is under {list(self.bases)!r}"


def _inside(path: str, base: str) -> bool:
    if path.startswith("/") != base.startswith("/"):
        return False
    if base in (".", "/"):
        return True
    return path == base or path.startswith(base + "/")


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


def _need(kind: ParamKind, allowed: tuple[ParamKind, ...], what: str, param: str) -> None:
    if kind not in allowed:
        raise ValueError(f"{what} cannot constrain {param!r}, which is {kind}")


def _as_list(v: str | list[str]) -> list[str]:
    return [v] if isinstance(v, str) else list(v)


def parse_constraint(param: str, kind: ParamKind, spec: Any) -> Constraint:
    """Build a constraint from its TOML value; raises ValueError with the reason."""
    if isinstance(spec, dict):
        return _parse_table(param, kind, msgspec.convert(spec, ConstraintSpec))
    if isinstance(spec, bool):
        _need(kind, ("bool",), "a bool", param)
        return Exact(param=param, value=spec)
    if isinstance(spec, int):
        _need(kind, ("int",), "an int", param)
        return Exact(param=param, value=spec)
    if isinstance(spec, str):
        _need(kind, ("str",), "a string", param)
        return Exact(param=param, value=spec)
    raise ValueError(f"constraint on {param!r} must be a string, number, bool or table")


def _parse_table(param: str, kind: ParamKind, t: ConstraintSpec) -> Constraint:
    given = [f for f in ConstraintSpec.__struct_fields__ if getattr(t, f) is not None]
    if len(given) != 1:
        raise ValueError(f"a constraint table needs exactly one of: {_KINDS}")
    strings: tuple[ParamKind, ...] = ("str", "list")
    if t.glob is not None:
        _need(kind, strings, "glob", param)
        globs = _as_list(t.glob)
        if not globs:
            raise ValueError("glob needs at least one pattern")
        # One regex for all the patterns: any of them may match the whole value.
        compiled = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))
        shown = globs[0] if len(globs) == 1 else ", ".join(globs)
        return Glob(param=param, pattern=shown, kind=kind, compiled=compiled)
    if t.regex is not None:
        _need(kind, strings, "regex", param)
        try:
            compiled = re.compile(t.regex)
        except re.error as exc:
            raise ValueError(f"bad regex {t.regex!r}: {exc}") from None
        return Regex(param=param, pattern=t.regex, kind=kind, compiled=compiled)
    if t.prefix is not None:
        _need(kind, strings, "prefix", param)
        return Prefix(param=param, prefix=t.prefix, kind=kind)
    if t.domain is not None:
        _need(kind, strings, "domain", param)
        return _parse_domain(param, kind, _as_list(t.domain))
    if t.range is not None:
        _need(kind, ("int",), "range", param)
        low, high = t.range
        if low > high:
            raise ValueError(f"range [{low}, {high}] is empty")
        return IntRange(param=param, low=low, high=high)
    if t.one_of is not None:
        if not t.one_of:
            raise ValueError("one_of needs at least one value")
        want = {"str": str, "list": str, "int": int, "bool": bool}[kind]
        wrong = [v for v in t.one_of if type(v) is not want]
        if wrong:
            raise ValueError(f"one_of values for {param!r} must be {want.__name__}: {wrong!r}")
        return OneOf(
            param=param,
            values=frozenset((type(v), v) for v in t.one_of),
            shown=tuple(t.one_of),
            kind=kind,
        )
    assert t.under is not None
    _need(kind, strings, "under", param)
    bases: list[str] = []
    for base in _as_list(t.under):
        norm = normalise_path(base)
        if norm is None:
            raise ValueError(f"under: {base!r} is not a clean path (no '..', no NUL)")
        bases.append(norm)
    return Under(param=param, bases=tuple(bases), kind=kind)


def _parse_domain(param: str, kind: ParamKind, names: list[str]) -> Domain:
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
        param=param, exact=frozenset(exact), suffixes=tuple(suffixes), shown=tuple(names), kind=kind
    )
