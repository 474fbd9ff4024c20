"""Emptiness with a witness: the shortest strings in some languages and outside others.

A breadth-first walk of the product of the automata, each determinised lazily (subset
construction on the fly), over the character classes that tell their edges apart. It
visits each product state once, so it ends, and the first strings it finds are the
shortest: an answer of none is a proof, not a failure to sample.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from itertools import pairwise

from .charset import pick_in
from .nfa import NFA

State = tuple[frozenset[int], ...]


def _pieces(autos: Sequence[NFA], state: State) -> list[tuple[int, int]]:
    """The maximal character intervals every edge out of `state` treats alike."""
    points: set[int] = set()
    for nfa, states in zip(autos, state, strict=True):
        if states:
            points |= nfa.points(states)
    ordered = sorted(points)
    return [(lo, nxt - 1) for lo, nxt in pairwise(ordered)]


def shortest(inside: Sequence[NFA], outside: Sequence[NFA] = (), *, limit: int = 1) -> list[str]:
    """Up to `limit` shortest strings every `inside` automaton accepts and no `outside` one.

    An empty list proves there is none. `inside` must not be empty.
    """
    autos = [*inside, *outside]
    n_in = len(inside)
    start: State = tuple(a.initial() for a in autos)
    if any(not s for s in start[:n_in]):
        return []
    parents: dict[State, tuple[State, str] | None] = {start: None}
    queue: deque[State] = deque([start])
    found: list[str] = []
    while queue:
        state = queue.popleft()
        if all(a.accept in s for a, s in zip(autos[:n_in], state[:n_in], strict=True)) and not any(
            a.accept in s for a, s in zip(autos[n_in:], state[n_in:], strict=True)
        ):
            found.append(_spell(parents, state))
            if len(found) >= limit:
                return found
        live: list[tuple[int, str, State]] = []
        for lo, hi in _pieces(autos, state):
            first = [a.step(s, lo) for a, s in zip(autos[:n_in], state[:n_in], strict=True)]
            if not all(first):
                continue  # some language takes no string going this way
            nxt = (
                *first,
                *(
                    a.step(s, lo) if s else s
                    for a, s in zip(autos[n_in:], state[n_in:], strict=True)
                ),
            )
            if nxt not in parents:
                live.append((*pick_in(lo, hi), nxt))
        # Readable characters first, so the witness found among the shortest reads well.
        for _, ch, nxt in sorted(live, key=lambda x: x[0]):
            if nxt not in parents:
                parents[nxt] = (state, ch)
                queue.append(nxt)
    return found


def _spell(parents: dict[State, tuple[State, str] | None], state: State) -> str:
    chars: list[str] = []
    link = parents[state]
    while link is not None:
        state, ch = link
        chars.append(ch)
        link = parents[state]
    return "".join(reversed(chars))
