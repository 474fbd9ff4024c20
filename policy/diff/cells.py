"""Walk every (source workload, action, target) cell of two policies and compare them."""

from __future__ import annotations

from typing import Any

from ..catalog import Catalog
from ..evaluate import candidates, evaluate, runs_on
from ..model import Constraint, Policy, Rule
from ..subjects import covers_target
from .regions import Regions
from .report import RANK, CellDiff, Change, Outcome, PolicyDiff

#: A rule in a cell: the rule (None for the default deny), its constraints, its outcome.
Step = tuple[Rule | None, tuple[Constraint, ...], Outcome]
DEFAULT = Outcome(decision="deny", rule="default")


def _outcome(policy: Policy, rule: Rule, source: str, action: str, target: str | None) -> Outcome:
    # Where it runs only varies when no target is named; a named target is where it runs.
    where = runs_on(policy, rule, source, action, target) if target is None else None
    if rule.decision == "deny":
        return Outcome(decision="deny", rule=rule.where)
    rate = rule.rate
    ask = rule.decision == "ask"
    return Outcome(
        decision=rule.decision,
        rule=rule.where,
        runs_on=where,
        approvers=rule.approvers if ask else (),
        quorum=rule.quorum if ask else 1,
        timeout=rule.timeout if ask else None,
        rate=rate.text if rate is not None else None,
        rate_per_s=rate.count / rate.per if rate is not None else None,
        burst=rate.count if rate is not None else None,
        grant=rule.grant if ask else None,
    )


def _chain(policy: Policy, source: str, action: str, target: str | None) -> list[Step]:
    """The rules that can decide this cell, in order, then the default deny."""
    on_sender = action in policy.sender_actions
    steps: list[Step] = [
        (r, r.constraints, _outcome(policy, r, source, action, target))
        for r in candidates(policy, source, action)
        if covers_target(r.target, r.default_target, source, target, policy.workloads, on_sender)
    ]
    steps.append((None, (), DEFAULT))
    return steps


def _key(step: Step) -> tuple[Any, ...]:
    """What a step means: its constraints and outcome, not the line it was written on."""
    _, constraints, outcome = step
    return (frozenset((c.param, c.describe()) for c in constraints), outcome.meaning())


def _kinds(old: Outcome, new: Outcome) -> list[tuple[str, bool, bool]]:
    """How a request decided by `old` before and `new` after is treated differently:
    (kind, wider, narrower) for each way; none when they decide alike."""
    if old.decision != new.decision:
        up = RANK[new.decision] > RANK[old.decision]
        return [(f"{old.decision} -> {new.decision}", up, not up)]
    if old.decision == "deny":
        return []
    found: list[tuple[str, bool, bool]] = []
    if old.runs_on != new.runs_on:
        # It reaches a workload it did not, and no longer the one it did.
        found.append((f"runs on {new.runs_on} (was {old.runs_on})", True, True))
    if old.rate != new.rate:
        looser = _looser(old, new)
        found.append((f"rate {old.rate or 'none'} -> {new.rate or 'none'}", looser, not looser))
    if old.approvers != new.approvers:
        found.append((f"approvers {list(old.approvers)} -> {list(new.approvers)}", False, False))
    if old.quorum != new.quorum:
        found.append((f"quorum {old.quorum} -> {new.quorum}", False, False))
    if old.timeout != new.timeout:
        found.append((f"timeout {old.timeout:g} s -> {new.timeout:g} s", False, False))
    if old.grant != new.grant:
        found.append((f"grant {old.grant} -> {new.grant}", False, False))
    return found


def _looser(old: Outcome, new: Outcome) -> bool:
    """True when the new rate lets through a request the old one would have refused."""
    if new.rate is None:
        return True
    if old.rate is None:
        return False
    assert old.rate_per_s is not None and new.rate_per_s is not None
    assert old.burst is not None and new.burst is not None
    return new.rate_per_s > old.rate_per_s or new.burst > old.burst


class _Analysis:
    """The regions of one pair of chains (shared by every cell with the same chains)."""

    def __init__(self, regions: Regions, old: list[Step], new: list[Step]) -> None:
        self.regions = regions
        k = 0
        while k < min(len(old), len(new)) - 1 and _key(old[k]) == _key(new[k]):
            k += 1
        # Where the common first rules match, old and new decide alike: look past them.
        self.common = [s[1] for s in old[:k]]
        self.old, self.new = old, new
        self.k = k
        # Every rule is listed in order; regions past an unreachable one are empty anyway.
        self.before = list(range(len(old)))
        self.after = list(range(len(new)))
        self.changes: list[tuple[str, bool, bool, int, int, dict[str, Any]]] = []
        self._compare()

    def _compare(self) -> None:
        seen: set[str] = set()
        for i in (i for i in self.before if i >= self.k):
            for j in (j for j in self.after if j >= self.k):
                todo = [k for k in _kinds(self.old[i][2], self.new[j][2]) if k[0] not in seen]
                if not todo:
                    continue
                must = [*self.old[i][1], *self.new[j][1]]
                must_not = [
                    *self.common,
                    *(s[1] for s in self.old[self.k : i]),
                    *(s[1] for s in self.new[self.k : j]),
                ]
                params = self.regions.witness(must, must_not)
                if params is None:
                    continue
                for kind, wider, narrower in todo:
                    seen.add(kind)
                    self.changes.append((kind, wider, narrower, i, j, params))


def _check(
    policy: Policy, expected: Rule | None, cell: tuple[str, str, str | None], params: dict[str, Any]
) -> None:
    source, action, target = cell
    got = evaluate(policy, source, action, target, params).rule
    if got is not expected:
        raise AssertionError(
            f"policy diff: witness {params} for {cell} is decided by "
            f"{got.where if got else 'default'}, not by "
            f"{expected.where if expected else 'default'} as the analysis found"
        )


def diff_policies(old: Policy, new: Policy, catalog: Catalog) -> PolicyDiff:
    """Every cell whose deciding rules changed from `old` to `new`, with a witness for each
    way it is decided differently, or the proof that no request goes further (or less far).

    Both policies must be compiled against the same workloads.
    """
    workloads = sorted(old.workloads)
    targets: list[str | None] = [None, *workloads]
    analyses: dict[tuple[Any, ...], _Analysis] = {}
    regions = {a: Regions(info.types) for a, info in catalog.items()}
    cells: list[CellDiff] = []
    total = 0
    for action in catalog:
        for source in workloads:
            for target in targets:
                total += 1
                before = _chain(old, source, action, target)
                after = _chain(new, source, action, target)
                if [_key(s) for s in before] == [_key(s) for s in after]:
                    continue
                key = (
                    action,
                    tuple((s[2].rule, _key(s)) for s in before),
                    tuple((s[2].rule, _key(s)) for s in after),
                )
                analysis = analyses.get(key)
                if analysis is None:
                    analysis = analyses[key] = _Analysis(regions[action], before, after)
                cells.append(_cell(analysis, old, new, (source, action, target)))
    return PolicyDiff(
        cells=cells,
        total_cells=total,
        unchanged_cells=total - len(cells),
        newly_allowed=any(not c.none_wider for c in cells),
    )


def _cell(a: _Analysis, old: Policy, new: Policy, cell: tuple[str, str, str | None]) -> CellDiff:
    changes = []
    for kind, wider, narrower, i, j, params in a.changes:
        _check(old, a.old[i][0], cell, params)
        _check(new, a.new[j][0], cell, params)
        changes.append(
            Change(
                kind=kind,
                wider=wider,
                narrower=narrower,
                before=a.old[i][2].shown(),
                after=a.new[j][2].shown(),
                params=params,
                omitted=[p for p in a.regions.optional if p not in params],
            )
        )
    return CellDiff(
        source=cell[0],
        action=cell[1],
        target=cell[2],
        before=[a.old[i][2].shown() for i in a.before],
        after=[a.new[j][2].shown() for j in a.after],
        changes=changes,
        none_wider=not any(c.wider for c in changes),
        none_narrower=not any(c.narrower for c in changes),
    )
