"""Shell globs (as `fnmatch` reads them) parsed into the pattern syntax tree.

`*` is any run of characters (`/` and newlines included), `?` any one character,
`[abc]`, `[a-z]` and `[!a-z]` a set; a `[` with no closing `]` is a literal `[`.
"""

from __future__ import annotations

from .charset import ANY, CharSet
from .syntax import Chars, Node, Repeat, seq


def _set(pattern: str, i: int) -> tuple[CharSet, int] | None:
    """The set starting after the `[` at i-1, and the index after its `]`; None if unclosed."""
    j = i
    negate = j < len(pattern) and pattern[j] == "!"
    if negate:
        j += 1
    start = j
    pairs: list[tuple[int, int]] = []
    while j < len(pattern) and (pattern[j] != "]" or j == start):
        lo = pattern[j]
        if j + 2 < len(pattern) and pattern[j + 1] == "-" and pattern[j + 2] != "]":
            pairs.append((ord(lo), ord(pattern[j + 2])))  # a reversed range is empty
            j += 3
        else:
            pairs.append((ord(lo), ord(lo)))
            j += 1
    if j >= len(pattern):
        return None
    found = CharSet.of(pairs)
    return (found.negate() if negate else found), j + 1


def parse_glob(pattern: str, wildcard: CharSet = ANY) -> Node:
    """The tree for `pattern`; `*`, `?` and sets only ever match characters in `wildcard`."""
    parts: list[Node] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        i += 1
        if c == "*":
            while i < len(pattern) and pattern[i] == "*":
                i += 1
            parts.append(Repeat(Chars(wildcard), 0, None))
        elif c == "?":
            parts.append(Chars(wildcard))
        elif c == "[" and (found := _set(pattern, i)) is not None:
            chars, i = found
            parts.append(Chars(chars.intersect(wildcard)))
        else:
            parts.append(Chars(CharSet.chars(c)))
    return seq(*parts) if parts else seq()


def has_wildcards(pattern: str) -> bool:
    """True when the glob is not a plain literal."""
    return any(c in pattern for c in "*?[")
