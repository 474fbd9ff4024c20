"""Nondeterministic automata built from the pattern syntax tree (Thompson's construction)."""

from __future__ import annotations

from bisect import bisect_right

from .charset import CharSet
from .syntax import Alt, Chars, Node, Repeat, Seq


class NFA:
    """States 0..n-1; `start` and one `accept` state; edges labelled with character sets."""

    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        self.edges: list[list[tuple[CharSet, int]]] = []
        self.start = self._state()
        self.accept = self._state()
        self._closures: dict[frozenset[int], frozenset[int]] = {}
        # The automaton is determinised lazily and the pieces kept: searches share them.
        self._steps: dict[tuple[frozenset[int], int], frozenset[int]] = {}
        self._points: dict[frozenset[int], frozenset[int]] = {}

    def _state(self) -> int:
        self.eps.append([])
        self.edges.append([])
        return len(self.eps) - 1

    @classmethod
    def of(cls, node: Node) -> NFA:
        """The automaton accepting exactly the strings the node matches."""
        nfa = cls()
        nfa._build(node, nfa.start, nfa.accept)
        return nfa

    def _build(self, node: Node, a: int, b: int) -> None:
        if isinstance(node, Chars):
            if not node.set.empty:
                self.edges[a].append((node.set, b))
        elif isinstance(node, Seq):
            cur = a
            for i, part in enumerate(node.parts):
                nxt = b if i == len(node.parts) - 1 else self._state()
                self._build(part, cur, nxt)
                cur = nxt
            if not node.parts:
                self.eps[a].append(b)
        elif isinstance(node, Alt):
            for option in node.options:
                self._build(option, a, b)
        else:
            self._repeat(node, a, b)

    def _repeat(self, node: Repeat, a: int, b: int) -> None:
        cur = a
        for _ in range(node.low):
            nxt = self._state()
            self._build(node.node, cur, nxt)
            cur = nxt
        if node.high is None:
            loop = self._state()
            self.eps[cur].append(loop)
            body_end = self._state()
            self._build(node.node, loop, body_end)
            self.eps[body_end].append(loop)
            self.eps[loop].append(b)
            return
        for _ in range(node.high - node.low):
            nxt = self._state()
            self.eps[cur].append(b)  # stop here: fewer repeats
            self._build(node.node, cur, nxt)
            cur = nxt
        self.eps[cur].append(b)

    def closure(self, states: frozenset[int]) -> frozenset[int]:
        """The states reachable from `states` without reading a character."""
        found = self._closures.get(states)
        if found is not None:
            return found
        seen = set(states)
        todo = list(states)
        while todo:
            for t in self.eps[todo.pop()]:
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        result = frozenset(seen)
        self._closures[states] = result
        return result

    def initial(self) -> frozenset[int]:
        """The closed start set."""
        return self.closure(frozenset({self.start}))

    def step(self, states: frozenset[int], code: int) -> frozenset[int]:
        """The closed set after reading the character `code`."""
        key = (states, code)
        found = self._steps.get(key)
        if found is None:
            nxt = {t for s in states for label, t in self.edges[s] if _has(label, code)}
            found = self.closure(frozenset(nxt)) if nxt else frozenset()
            self._steps[key] = found
        return found

    def points(self, states: frozenset[int]) -> frozenset[int]:
        """Where the edges out of `states` start and stop telling characters apart."""
        found = self._points.get(states)
        if found is None:
            found = frozenset(
                p
                for s in states
                for label, _ in self.edges[s]
                for lo, hi in label.ranges
                for p in (lo, hi + 1)
            )
            self._points[states] = found
        return found

    def accepts(self, text: str) -> bool:
        """True when the automaton accepts `text` (a direct run, for checks and tests)."""
        cur = self.initial()
        for ch in text:
            cur = self.step(cur, ord(ch))
            if not cur:
                return False
        return self.accept in cur


def _has(label: CharSet, code: int) -> bool:
    ranges = label.ranges
    i = bisect_right(ranges, (code, 0x7FFFFFFF)) - 1
    return i >= 0 and ranges[i][0] <= code <= ranges[i][1]
