"""The regex subset the policy accepts, parsed into the pattern syntax tree.

Supported: literals, `.` (any character but a newline), classes `[a-z]` and `[^...]`,
`\\d \\w \\s` and their negations (ASCII: `[0-9]`, `[A-Za-z0-9_]`, `[ \\t\\n\\r\\f\\v]`),
escapes (`\\.`, `\\n`, `\\xhh`, `\\uhhhh`), groups `(...)`, `(?:...)` and
`(?P<name>...)`, alternation, the quantifiers `* + ? {m} {m,} {m,n} {,n} {,}` (lazy or not: the
same strings), and `^` / `$` at the very ends (a rule's regex is anchored anyway).
Anything else (backreferences, lookaround, inline flags, `\\b`, possessive quantifiers)
is refused: the policy must be able to reason about every pattern it holds.
"""

from __future__ import annotations

import re
import warnings

from .charset import ANY, CharSet
from .syntax import Chars, Node, Repeat, alt, seq

MAX_REPEAT = 1000
DIGIT = CharSet.span("0", "9")
WORD = CharSet.of([(ord("0"), ord("9")), (ord("A"), ord("Z")), (ord("a"), ord("z")), (95, 95)])
SPACE = CharSet.chars(" \t\n\r\f\v")
_CLASSES = {
    "d": DIGIT,
    "w": WORD,
    "s": SPACE,
    "D": DIGIT.negate(),
    "W": WORD.negate(),
    "S": SPACE.negate(),
}
_CONTROL = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
# `{,n}` is {0,n} and `{,}` is {0,} (as Python's re reads them); `{}`, `{,x}` are literal.
_QUANT = re.compile(r"\{(?:(\d+)(?:(,)(\d*))?|,(\d*))\}")
_NOT_NEWLINE = CharSet.chars("\n").negate()


class RegexError(ValueError):
    """A regex outside the supported subset, or not a regex at all."""


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def fail(self, message: str) -> RegexError:
        return RegexError(f"{message} at position {self.i}")

    def peek(self) -> str | None:
        return self.text[self.i] if self.i < len(self.text) else None

    def take(self) -> str:
        c = self.text[self.i]
        self.i += 1
        return c

    def parse(self) -> Node:
        if self.peek() == "^":
            self.i += 1
        node = self.alternation()
        if self.peek() == ")":
            raise self.fail("unbalanced ')'")
        return node

    def alternation(self) -> Node:
        options = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            options.append(self.sequence())
        return alt(*options)

    def sequence(self) -> Node:
        parts: list[Node] = []
        while (c := self.peek()) is not None and c not in "|)":
            if c == "$":
                self.i += 1
                if self.peek() not in (None, "|", ")") or self._nested():
                    raise self.fail("'$' is only supported at the end of the pattern")
                continue
            parts.append(self.quantified(self.atom()))
        return seq(*parts)

    def _nested(self) -> bool:
        # `$` closes the whole pattern only outside every group and alternative.
        return self.i != len(self.text)

    def quantified(self, node: Node) -> Node:
        while True:
            c = self.peek()
            low: int
            high: int | None
            if c == "*":
                low, high = 0, None
                self.i += 1
            elif c == "+":
                low, high = 1, None
                self.i += 1
            elif c == "?":
                low, high = 0, 1
                self.i += 1
            elif c == "{" and (m := _QUANT.match(self.text, self.i)):
                self.i = m.end()
                if m.group(4) is not None:
                    low, high = 0, int(m.group(4)) if m.group(4) else None
                else:
                    low = int(m.group(1))
                    high = low if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
                if high is not None and high < low:
                    raise self.fail("a repeat's minimum is above its maximum")
                if low > MAX_REPEAT or (high or 0) > MAX_REPEAT:
                    raise self.fail(f"repeats above {MAX_REPEAT} are not supported")
            else:
                return node
            if self.peek() == "?":
                self.i += 1  # lazy: another match order, the same strings
            elif self.peek() == "+":
                raise self.fail("possessive quantifiers are not supported")
            again = self.peek() == "{" and _QUANT.match(self.text, self.i)
            if self.peek() in ("*", "+", "?") or again:
                raise self.fail("multiple repeat")
            node = Repeat(node, low, high)

    def atom(self) -> Node:
        c = self.take()
        if c == ".":
            return Chars(_NOT_NEWLINE)
        if c == "[":
            return Chars(self.char_class())
        if c == "(":
            return self.group()
        if c == "\\":
            return Chars(self.escape(in_class=False))
        if c in "*+?":
            raise self.fail("nothing to repeat")
        if c == "{" and _QUANT.match(self.text, self.i - 1):
            raise self.fail("nothing to repeat")
        if c == "^":
            raise self.fail("'^' is only supported at the start of the pattern")
        return Chars(CharSet.chars(c))

    def group(self) -> Node:
        if self.text.startswith("?:", self.i):
            self.i += 2
        elif self.text.startswith("?P<", self.i):
            end = self.text.find(">", self.i)
            if end < 0 or not self.text[self.i + 3 : end].isidentifier():
                raise self.fail("bad group name")
            self.i = end + 1
        elif self.peek() == "?":
            raise self.fail("lookaround, inline flags and backreferences are not supported")
        node = self.alternation()
        if self.peek() != ")":
            raise self.fail("missing ')'")
        self.i += 1
        return node

    def escape(self, *, in_class: bool) -> CharSet:
        if self.peek() is None:
            raise self.fail("bad escape (end of pattern)")
        c = self.take()
        if c in _CLASSES:
            return _CLASSES[c]
        if c in _CONTROL:
            return CharSet.chars(_CONTROL[c])
        if c in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[c]
            digits = self.text[self.i : self.i + width]
            if len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise self.fail(f"bad escape \\{c}")
            self.i += width
            return CharSet.of([(int(digits, 16), int(digits, 16))])
        if c == "0":
            return CharSet.chars("\0")
        if c == "b" and in_class:
            return CharSet.chars("\b")
        if c.isalnum():
            raise self.fail(f"escape \\{c} is not supported")
        return CharSet.chars(c)

    def char_class(self) -> CharSet:
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        found = CharSet(())
        first = True
        while True:
            c = self.peek()
            if c is None:
                raise self.fail("unterminated character set")
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            lo = self.class_item()
            if self.peek() == "-" and self.i + 1 < len(self.text) and self.text[self.i + 1] != "]":
                self.i += 1
                hi = self.class_item()
                if len(lo.ranges) != 1 or len(hi.ranges) != 1:
                    raise self.fail("bad character range")
                a, b = lo.ranges[0][0], hi.ranges[0][1]
                if lo.ranges[0][0] != lo.ranges[0][1] or hi.ranges[0][0] != hi.ranges[0][1]:
                    raise self.fail("bad character range")
                if a > b:
                    raise self.fail("bad character range")
                found = found.union(CharSet.of([(a, b)]))
            else:
                found = found.union(lo)
        return found.negate() if negate else found

    def class_item(self) -> CharSet:
        c = self.take()
        if c == "\\":
            return self.escape(in_class=True)
        if c == "[" and self.peek() in (":", "=", "."):
            raise self.fail("POSIX classes are not supported")
        return CharSet.chars(c)


def parse_regex(text: str) -> Node:
    """The tree for `text` (to be matched against the whole value); raises RegexError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # re's FutureWarnings about set syntax
        try:
            re.compile(text)
        except re.error as exc:
            raise RegexError(str(exc)) from None
    return _Parser(text).parse()


__all__ = ["ANY", "RegexError", "parse_regex"]
