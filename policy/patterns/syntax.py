"""The syntax tree globs and regexes are parsed into, and the Python regex it stands for."""

from __future__ import annotations

import re

import msgspec

from .charset import MAX_CHAR, CharSet


class Chars(msgspec.Struct, frozen=True, tag=True):
    """Exactly one character from the set."""

    set: CharSet


class Seq(msgspec.Struct, frozen=True, tag=True):
    """The parts one after another (no parts: the empty string)."""

    parts: tuple[Node, ...]


class Alt(msgspec.Struct, frozen=True, tag=True):
    """Any one of the options (no options: nothing at all)."""

    options: tuple[Node, ...]


class Repeat(msgspec.Struct, frozen=True, tag=True):
    """The node `low` to `high` times (`high` None: unbounded)."""

    node: Node
    low: int
    high: int | None


Node = Chars | Seq | Alt | Repeat
EMPTY = Seq(())


def literal(text: str) -> Node:
    """The node matching exactly `text`."""
    return Seq(tuple(Chars(CharSet.chars(c)) for c in text))


def seq(*parts: Node) -> Node:
    """Parts in order, nested sequences flattened."""
    flat: list[Node] = []
    for p in parts:
        flat.extend(p.parts if isinstance(p, Seq) else (p,))
    return flat[0] if len(flat) == 1 else Seq(tuple(flat))


def alt(*options: Node) -> Node:
    """One of the options."""
    return options[0] if len(options) == 1 else Alt(tuple(options))


def star(node: Node) -> Node:
    """The node any number of times."""
    return Repeat(node, 0, None)


def _char(code: int) -> str:
    c = chr(code)
    if c.isalnum() and code < 0x80:
        return c
    if code > 0xFFFF:
        return f"\\U{code:08x}"
    return f"\\u{code:04x}" if code > 0xFF else f"\\x{code:02x}"


def _class(s: CharSet) -> str:
    if s.ranges == ((0, MAX_CHAR),):
        return "(?s:.)"
    if len(s.ranges) == 1 and s.ranges[0][0] == s.ranges[0][1]:
        return _char(s.ranges[0][0])
    if s.empty:
        return "(?!)"
    body = "".join(_char(lo) if lo == hi else f"{_char(lo)}-{_char(hi)}" for lo, hi in s.ranges)
    return f"[{body}]"


def _single(node: Node) -> str | None:
    if isinstance(node, Chars) and len(node.set.ranges) == 1:
        lo, hi = node.set.ranges[0]
        if lo == hi:
            return chr(lo)
    return None


def _common_start(texts: list[str]) -> str:
    common = texts[0]
    for t in texts[1:]:
        while not t.startswith(common):
            common = common[:-1]
    return common


def _fixed(node: Node, at_end: bool) -> str:
    """Text every string the node matches starts (or, `at_end`, ends) with."""
    if isinstance(node, Chars):
        return _single(node) or ""
    if isinstance(node, Seq):
        out = ""
        for part in reversed(node.parts) if at_end else node.parts:
            ch = _single(part)
            if ch is None:
                rest = _fixed(part, at_end)
                return rest + out if at_end else out + rest
            out = ch + out if at_end else out + ch
        return out
    if isinstance(node, Alt):
        if not node.options:
            return ""
        texts = [_fixed(o, at_end) for o in node.options]
        if at_end:
            return _common_start([t[::-1] for t in texts])[::-1]
        return _common_start(texts)
    return _fixed(node.node, at_end) if node.low >= 1 else ""


def fixed_prefix(node: Node) -> str:
    """Text every string the node matches starts with (a cheap disjointness test)."""
    return _fixed(node, at_end=False)


def fixed_suffix(node: Node) -> str:
    """Text every string the node matches ends with."""
    return _fixed(node, at_end=True)


def longest_infix(node: Node) -> str:
    """The longest run of plain characters of a sequence: text every match contains."""
    if not isinstance(node, Seq):
        return _single(node) or ""
    best = run = ""
    for part in node.parts:
        ch = _single(part)
        run = run + ch if ch is not None else ""
        if len(run) > len(best):
            best = run
    return best


def to_regex(node: Node) -> str:
    """The Python regex (no flags needed) matching exactly the node's strings."""
    if isinstance(node, Chars):
        return _class(node.set)
    if isinstance(node, Seq):
        return "".join(to_regex(p) for p in node.parts)
    if isinstance(node, Alt):
        if not node.options:
            return "(?!)"
        return "(?:" + "|".join(to_regex(o) for o in node.options) + ")"
    inner = node.node
    if isinstance(inner, Chars) and inner.set.ranges == ((0, MAX_CHAR),):
        body = "(?s:.)"
    elif isinstance(inner, Chars):
        body = _class(inner.set)
    else:
        body = f"(?:{to_regex(inner)})"
    suffix = {(0, None): "*", (1, None): "+", (0, 1): "?"}.get((node.low, node.high))
    if suffix is None:
        high = "" if node.high is None else str(node.high)
        suffix = f"{{{node.low},{high}}}"
    if body == "(?s:.)" and suffix in ("*", "+"):
        return f"(?s:.{suffix})"
    return body + suffix


def compile_node(node: Node) -> re.Pattern[str]:
    """The compiled regex for the node; use `fullmatch`."""
    return re.compile(to_regex(node))
