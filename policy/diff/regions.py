"""A region of requests: params satisfying some rules' constraints and failing others'.

The constraints that must hold are a conjunction per param; each rule that must not
match is a conjunction that must fail, so one of its constraints must. A depth-first
search picks, rule by rule, the param on which it fails, checking each param's choice at
once (params are independent of one another), and skips a rule that already cannot
match. It tries every choice before saying none exists, so its answer is exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..catalog import ParamType
from ..model import Constraint
from .values import MISSING, NONE, ParamSolver

Per = dict[str, tuple[tuple[Constraint, ...], tuple[Constraint, ...]]]


class Regions:
    """Finds a request's params in a region, for one action's params."""

    def __init__(self, types: Mapping[str, ParamType]) -> None:
        self.types = types
        self.optional = [name for name, t in types.items() if t.optional]
        self.solvers = {name: ParamSolver(name, t) for name, t in types.items()}

    def _ok(self, per: Per, param: str) -> bool:
        pos, neg = per.get(param, ((), ()))
        return self.solvers[param].solve(pos, neg) is not NONE

    def witness(
        self, must: Sequence[Constraint], must_not: Sequence[Sequence[Constraint]]
    ) -> dict[str, Any] | None:
        """Params satisfying every constraint in `must` and, for each conjunction in
        `must_not`, failing at least one of its constraints; None proves there are none."""
        per: Per = {}
        for c in must:
            pos, neg = per.get(c.param, ((), ()))
            per[c.param] = ((*pos, c), neg)
        if not all(self._ok(per, p) for p in per):
            return None
        if any(not conj for conj in must_not):
            return None  # a rule with no constraints cannot be made to fail
        found = self._search(per, list(must_not))
        return None if found is None else self._values(found)

    def _search(self, per: Per, must_not: list[Sequence[Constraint]]) -> Per | None:
        # Iterative depth-first search: a policy may put hundreds of rules in one cell.
        stack: list[tuple[int, Per, list[Constraint] | None]] = [(0, per, None)]
        while stack:
            k, state, options = stack.pop()
            if k == len(must_not):
                return state
            conj = must_not[k]
            if options is None:
                if any(self._excluded(state, c) for c in conj):
                    stack.append((k + 1, state, None))
                    continue
                options = list(conj)
            while options:
                c = options.pop(0)
                pos, neg = state.get(c.param, ((), ()))
                chosen = {**state, c.param: (pos, (*neg, c))}
                if self._ok(chosen, c.param):
                    stack.append((k, state, options))  # come back for the other choices
                    stack.append((k + 1, chosen, None))
                    break
        return None

    def _excluded(self, state: Per, c: Constraint) -> bool:
        """True when no value allowed so far satisfies `c`: the rule fails on it anyway."""
        pos, neg = state.get(c.param, ((), ()))
        return self.solvers[c.param].solve((*pos, c), neg) is NONE

    def _values(self, per: Per) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, solver in self.solvers.items():
            pos, neg = per.get(name, ((), ()))
            value = solver.solve(pos, neg)
            assert value is not NONE
            if value is not MISSING:
                out[name] = value
        return out
