"""Run a policy's `[[test]]` tables: what its owner says must always be decided so."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from .evaluate import evaluate
from .model import Policy, PolicyTest

#: Normalises a test's params the way the daemon's decoder would, or raises ValueError.
Normaliser = Callable[[str, str | None, Mapping[str, Any]], Mapping[str, Any]]


class TestFailure(msgspec.Struct, frozen=True):
    """One test whose request was decided otherwise than it says."""

    test: PolicyTest
    message: str

    def __str__(self) -> str:
        return f"{self.test.where}: {self.message}"


def run_tests(policy: Policy, normalise: Normaliser | None = None) -> list[TestFailure]:
    """Every failing test, in file order."""
    failures: list[TestFailure] = []
    for t in policy.tests:
        params: Mapping[str, Any] = t.params
        if normalise is not None:
            try:
                params = normalise(t.action, t.target, t.params)
            except ValueError as exc:
                failures.append(TestFailure(test=t, message=f"params invalid: {exc}"))
                continue
        v = evaluate(policy, t.source, t.action, t.target, params)
        what = f"{t.source} {t.action} -> {t.target or '@default'}"
        if v.decision != t.expect:
            failures.append(
                TestFailure(
                    test=t,
                    message=(f"{what}: expected {t.expect}, got {v.decision} (rule {v.rule_name})"),
                )
            )
        elif t.rule is not None and v.rule_name != t.rule:
            failures.append(
                TestFailure(
                    test=t, message=(f"{what}: expected rule {t.rule}, decided by {v.rule_name}")
                )
            )
    return failures
