"""A necessary condition for any of several patterns to match a whole string, in string
tests that run at C speed (startswith, endswith, `in`).

The monitors match every event's path against the union of the triggers' globs. Python's
`re` tries each alternative in turn, and a glob that starts with `*` backtracks through
the whole string: about 4 µs for a path that matches none of sixty globs, at 100,000
events a second. Nearly every such glob has a literal at one end (`/etc/cron*`,
`*/.bashrc`) or inside (`*/.config/systemd/*`); a string that has none of them cannot
match, and the regex is run only for the few that do.
"""

from __future__ import annotations

import re

from .syntax import Alt, Node, Repeat, fixed_prefix, fixed_suffix, longest_infix

#: Shorter inner literals say too little to be worth a test of their own.
MIN_INFIX = 2


class Prefilter:
    """`admits(s)` is False only where no pattern it was built from can match `s`."""

    __slots__ = ("always", "contains", "ends", "heads", "inner", "starts", "tails")

    def __init__(
        self,
        starts: tuple[str, ...] = (),
        ends: tuple[str, ...] = (),
        contains: tuple[str, ...] = (),
        *,
        always: bool = False,
    ) -> None:
        self.starts, self.ends, self.contains = starts, ends, contains
        #: Some pattern has no literal to test (`*`, `?*`): every string is admitted.
        self.always = always
        # The first and last two characters the literals can have: a set lookup rules
        # most strings out before a test over every literal. One search for the inner ones.
        self.heads = _edges(starts, slice(0, 2))
        self.tails = _edges(ends, slice(-2, None))
        self.inner = re.compile("|".join(map(re.escape, contains))) if contains else None

    def admits(self, value: str) -> bool:
        if self.always:
            return True
        heads, tails = self.heads, self.tails
        if (heads is None or value[:2] in heads) and value.startswith(self.starts):
            return True
        if (tails is None or value[-2:] in tails) and value.endswith(self.ends):
            return True
        return self.inner is not None and self.inner.search(value) is not None


def _edges(texts: tuple[str, ...], cut: slice) -> frozenset[str] | None:
    return None if any(len(t) < 2 for t in texts) else frozenset(t[cut] for t in texts)


def _options(node: Node) -> list[Node]:
    """The top-level alternatives, nested unions flattened (each gets its own test)."""
    if isinstance(node, Alt):
        return [leaf for o in node.options for leaf in _options(o)]
    if isinstance(node, Repeat) and node.low == 1 and node.high == 1:
        return _options(node.node)
    return [node]


def prefilter(nodes: list[Node]) -> Prefilter:
    """The cheapest test this module knows that every match of any node passes."""
    starts: list[str] = []
    ends: list[str] = []
    contains: list[str] = []
    for option in (o for n in nodes for o in _options(n)):
        if prefix := fixed_prefix(option):
            starts.append(prefix)
        elif suffix := fixed_suffix(option):
            ends.append(suffix)
        elif len(infix := longest_infix(option)) >= MIN_INFIX:
            contains.append(infix)
        else:
            return Prefilter(always=True)
    return Prefilter(
        starts=tuple(dict.fromkeys(starts)),
        ends=tuple(dict.fromkeys(ends)),
        contains=tuple(dict.fromkeys(contains)),
    )
