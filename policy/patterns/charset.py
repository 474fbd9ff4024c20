"""Sets of characters as sorted, disjoint, inclusive code point intervals."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable

import msgspec

MAX_CHAR = 0x10FFFF
#: Characters a witness string is built from when it may choose: readable ones first.
PREFERRED = "abcdefghijklmnopqrstuvwxyz0123456789-._/"
#: (code, rank) of the preferred characters, by code: a range's best one by bisection.
_BY_CODE = sorted((ord(c), i) for i, c in enumerate(PREFERRED))
_CODES = [code for code, _ in _BY_CODE]


def pick_in(lo: int, hi: int) -> tuple[int, str]:
    """The most readable character in [lo, hi] and its rank (lower reads better)."""
    i = bisect_left(_CODES, lo)
    j = bisect_right(_CODES, hi)
    if i < j:
        rank, code = min((r, c) for c, r in _BY_CODE[i:j])
        return rank, chr(code)
    if hi >= 0x21 and lo <= 0x7E:
        return len(PREFERRED), chr(max(lo, 0x21))
    return len(PREFERRED) + 1, chr(lo)


class CharSet(msgspec.Struct, frozen=True):
    """A set of characters: `ranges` are sorted, disjoint, non-adjacent (lo, hi) pairs."""

    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, pairs: Iterable[tuple[int, int]]) -> CharSet:
        """The union of the given inclusive intervals, normalised."""
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted(p for p in pairs if p[0] <= p[1]):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        return cls(tuple(merged))

    @classmethod
    def chars(cls, text: str) -> CharSet:
        """The set of the characters in `text`."""
        return cls.of((ord(c), ord(c)) for c in text)

    @classmethod
    def span(cls, lo: str, hi: str) -> CharSet:
        """The characters from `lo` to `hi` inclusive."""
        return cls.of([(ord(lo), ord(hi))])

    def __contains__(self, char: object) -> bool:
        if not isinstance(char, str) or len(char) != 1:
            return False
        code = ord(char)
        return any(lo <= code <= hi for lo, hi in self.ranges)

    def union(self, other: CharSet) -> CharSet:
        """Characters in either set."""
        return CharSet.of(self.ranges + other.ranges)

    def negate(self) -> CharSet:
        """Every character not in this set."""
        out: list[tuple[int, int]] = []
        nxt = 0
        for lo, hi in self.ranges:
            if lo > nxt:
                out.append((nxt, lo - 1))
            nxt = hi + 1
        if nxt <= MAX_CHAR:
            out.append((nxt, MAX_CHAR))
        return CharSet(tuple(out))

    def intersect(self, other: CharSet) -> CharSet:
        """Characters in both sets."""
        return self.negate().union(other.negate()).negate()

    @property
    def empty(self) -> bool:
        """True when no character is in the set."""
        return not self.ranges

    def pick(self) -> str:
        """One member, a readable one when there is one."""
        return min(pick_in(lo, hi) for lo, hi in self.ranges)[1]


ANY = CharSet(((0, MAX_CHAR),))
NOTHING = CharSet(())
