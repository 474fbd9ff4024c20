"""One param: is there a value every given constraint accepts and every other one refuses?

Exact for every kind. Strings go through the automata (the param's universe, the
accepting constraints, the refusing ones); ints through interval arithmetic; lists
through their elements, with whole-list values checked one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..catalog import ParamType
from ..languages import domain_language, under_language, universe
from ..matchers import AnyConstraint, Domain, Exact, Glob, IntRange, OneOf, Prefix, Regex, Under
from ..model import Constraint
from ..patterns.charset import ANY
from ..patterns.nfa import NFA
from ..patterns.search import shortest
from ..patterns.syntax import Chars, Node, alt, fixed_prefix, literal, seq, star


class Missing:
    """The param is absent (an optional param): no constraint matches it."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = Missing()
#: No value exists.
NONE: tuple[()] = ()
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


class Undecided(Exception):
    """The search for a list value gave up (never expected in practice); said, never hidden."""


def _language(c: Constraint, t: ParamType) -> Node:
    """The strings (or list elements) an element constraint accepts."""
    if isinstance(c, Exact):
        assert isinstance(c.value, str)
        return literal(c.value)
    if isinstance(c, OneOf):
        return alt(*(literal(v) for v in c.shown if isinstance(v, str)))
    if isinstance(c, Prefix):
        return seq(literal(c.prefix), star(Chars(ANY)))
    if isinstance(c, (Glob, Regex)):
        return c.node
    if isinstance(c, Domain):
        return domain_language(c.exact, c.suffixes, t)
    if isinstance(c, Under):
        return under_language(c.bases)
    raise TypeError(f"no string language for {c.describe()}")


def _accepts(c: Constraint, value: str) -> bool:
    """The real matcher on one string (an element constraint sees a one-element list)."""
    return c.matches([value]) if getattr(c, "each", False) else c.matches(value)


class Strings:
    """Automata for one string param (or a list param's elements), built once each."""

    def __init__(self, t: ParamType) -> None:
        self.type = t
        inside, outside = universe(t)
        self.inside = [NFA.of(n) for n in inside]
        self.outside = [NFA.of(n) for n in outside]
        self.prefixes = [fixed_prefix(n) for n in inside]
        self._autos: dict[int, tuple[Constraint, NFA, str]] = {}
        self._guessed: dict[int, list[str]] = {}

    def _entry(self, c: Constraint) -> tuple[Constraint, NFA, str]:
        found = self._autos.get(id(c))
        if found is None:
            node = _language(c, self.type)
            # Kept with the constraint, so its id is not reused while cached.
            found = (c, NFA.of(node), fixed_prefix(node))
            self._autos[id(c)] = found
        return found

    def _guesses(self, c: Constraint) -> list[str]:
        found = self._guessed.get(id(c))
        if found is None:
            found = shortest([*self.inside, self.auto(c)], self.outside, limit=4)
            self._guessed[id(c)] = found
        return found

    def auto(self, c: Constraint) -> NFA:
        """The automaton of an element constraint."""
        return self._entry(c)[1]

    def valid(self, value: str) -> bool:
        """True when `value` is in the param's universe."""
        return all(a.accepts(value) for a in self.inside) and not any(
            a.accepts(value) for a in self.outside
        )

    def find(
        self, pos: Sequence[Constraint], neg: Sequence[Constraint], limit: int = 1
    ) -> list[str]:
        """Up to `limit` shortest strings all of `pos` accept and none of `neg`."""
        finite = [c for c in pos if isinstance(c, (Exact, OneOf))]
        if finite:
            # A finite set: check its members directly (with the real matchers).
            first = finite[0]
            members = [first.value] if isinstance(first, Exact) else list(first.shown)
            found = [
                m
                for m in members
                if isinstance(m, str)
                and all(_accepts(c, m) for c in pos)
                and not any(_accepts(c, m) for c in neg)
                and self.valid(m)
            ]
            return sorted(found, key=lambda s: (len(s), s))[:limit]
        # Two languages whose every string starts differently share none: no search.
        prefixes = [*self.prefixes, *(self._entry(c)[2] for c in pos)]
        longest = max(prefixes, key=len)
        if not all(longest.startswith(p) for p in prefixes):
            return []
        if limit == 1:
            # Most regions have room: try the few shortest strings of each accepted
            # language on the others before searching the product (a proof of none
            # still needs the search).
            for c in pos:
                for guess in self._guesses(c):
                    if all(_accepts(p, guess) for p in pos) and not any(
                        _accepts(n, guess) for n in neg
                    ):
                        return [guess]
        inside = [*self.inside, *(self.auto(c) for c in pos)]
        # A refused language that starts differently cannot take any of these strings.
        outside = [
            *self.outside,
            *(
                entry[1]
                for entry in map(self._entry, neg)
                if longest.startswith(entry[2]) or entry[2].startswith(longest)
            ),
        ]
        return shortest(inside, outside, limit=limit)


def _ints(t: ParamType, pos: Sequence[Constraint], neg: Sequence[Constraint]) -> int | None:
    """The smallest int all of `pos` accept and none of `neg`, or None."""
    spans = [(t.low if t.low is not None else INT_MIN, t.high if t.high is not None else INT_MAX)]

    def keep(allowed: list[tuple[int, int]]) -> None:
        nonlocal spans
        spans = [
            (max(a, c), min(b, d)) for a, b in spans for c, d in allowed if max(a, c) <= min(b, d)
        ]

    def drop(refused: list[tuple[int, int]]) -> None:
        nonlocal spans
        for c, d in refused:
            out = []
            for a, b in spans:
                if b < c or a > d:
                    out.append((a, b))
                    continue
                if a < c:
                    out.append((a, c - 1))
                if b > d:
                    out.append((d + 1, b))
            spans = out

    for c in pos:
        keep(_int_spans(c))
    for c in neg:
        drop(_int_spans(c))
    return min((a for a, _ in spans), default=None)


def _int_spans(c: Constraint) -> list[tuple[int, int]]:
    if isinstance(c, IntRange):
        return [(c.low, c.high)]
    if isinstance(c, Exact) and type(c.value) is int:
        return [(c.value, c.value)]
    if isinstance(c, OneOf):
        return [(v, v) for v in c.shown if type(v) is int]
    return []  # a constraint no int satisfies


class ParamSolver:
    """Finds a value for one param given the constraints it must and must not satisfy."""

    def __init__(self, name: str, t: ParamType) -> None:
        self.name = name
        self.type = t
        self.strings = Strings(t) if t.scalar == "str" else None
        self._memo: dict[tuple[frozenset[int], frozenset[int]], Any] = {}

    def solve(self, pos: Sequence[Constraint], neg: Sequence[Constraint]) -> Any:
        """A value (or MISSING) satisfying all of `pos` and none of `neg`; NONE if none."""
        key = (frozenset(id(c) for c in pos), frozenset(id(c) for c in neg))
        if key not in self._memo:
            self._memo[key] = self._solve(pos, neg)
        return self._memo[key]

    def _solve(self, pos: Sequence[Constraint], neg: Sequence[Constraint]) -> Any:
        t = self.type
        if not pos and t.optional:
            return MISSING  # no constraint matches a missing value
        if t.kind == "list":
            return self._list(pos, neg)
        if t.kind == "bool":
            for v in (False, True):
                if all(c.matches(v) for c in pos) and not any(c.matches(v) for c in neg):
                    return v
            return NONE
        if t.kind == "int":
            found = _ints(t, pos, neg)
            if found is None:
                return NONE
            if not pos and t.default is not None and not any(c.matches(t.default) for c in neg):
                return t.default
            return found
        assert self.strings is not None
        if not pos and isinstance(t.default, str) and not any(c.matches(t.default) for c in neg):
            return t.default
        found_s = self.strings.find(pos, neg)
        return found_s[0] if found_s else NONE

    def _list(self, pos: Sequence[Constraint], neg: Sequence[Constraint]) -> Any:
        t = self.type
        whole = [c for c in pos if isinstance(c, Exact)]
        if whole:
            value = list(whole[0].value) if isinstance(whole[0].value, tuple) else []
            return value if self._fits(value, pos, neg) else NONE
        refused_whole = sum(1 for c in neg if isinstance(c, Exact))
        refused_each = [c for c in neg if not isinstance(c, Exact)]
        candidates: list[list[Any]] = []
        if not pos and isinstance(t.default, tuple):
            candidates.append(list(t.default))
        if not pos and t.min_items == 0:
            candidates.append([])
        lists, complete = self._element_lists(pos, refused_each, refused_whole + 1)
        for value in [*candidates, *lists]:
            if self._fits(value, pos, neg):
                return value
        if complete:
            return NONE
        raise Undecided(f"could not settle a value for list param {self.name!r}")

    def _element_lists(
        self, each: Sequence[Constraint], refused: list[Constraint], need: int
    ) -> tuple[list[list[Any]], bool]:
        """Non-empty lists whose elements all satisfy `each` and which, together, fail
        every `refused`; and whether their failing proves no such list exists.

        Whole-list values refused elsewhere exclude finitely many lists, so `need` (one
        more than there are of them) distinct candidates always include a good one.
        """
        if self.strings is None:
            return [], False  # no list-of-int params exist; never claim a proof for one
        # One element outside every refused language serves them all.
        singles = self.strings.find(each, refused, limit=need)
        if singles:
            lists = [[s] for s in singles]
            others = self.strings.find(each, [], limit=need + 1)
            lists += [[singles[0], m] for m in others if m != singles[0]]
            return lists, False
        if not refused:
            return [], True  # no element satisfies `each`: only the empty list could
        per = [self.strings.find(each, [r], limit=1) for r in refused]
        if any(not options for options in per):
            return [], True  # some refused constraint accepts every allowed element
        base = list(dict.fromkeys(options[0] for options in per))
        return [base, base[::-1]], False

    def _fits(self, value: list[Any], pos: Sequence[Constraint], neg: Sequence[Constraint]) -> bool:
        t = self.type
        if len(value) < t.min_items or (t.max_items is not None and len(value) > t.max_items):
            return False
        if self.strings is not None and not all(
            isinstance(v, str) and self.strings.valid(v) for v in value
        ):
            return False
        return all(c.matches(value) for c in pos) and not any(c.matches(value) for c in neg)


__all__ = ["MISSING", "NONE", "AnyConstraint", "ParamSolver", "Undecided"]
