"""Per-rule, per-source token buckets for rules with `rate = "N/period"`.

Buckets are keyed by the rule's identity (file:line and its content), so a reload that
leaves a rule as it was leaves its buckets as they were: reloading is no way to refill.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from policy import Rule
from policy.model import Rate


class RateLimiter:
    """A token bucket for each (rule, source workload) pair that has used its rule."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # key -> (tokens, last refill time)
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def allow(self, rule: Rule, source: str) -> bool:
        """Take one token from the rule's bucket for `source`; False when it is empty."""
        if rule.rate is None:
            return True
        return self.take((_RULE + rule.identity, source), rule.rate)

    def take(self, key: tuple[str, str], rate: Rate) -> bool:
        """Take one token from the bucket `key` refilled at `rate`; False when empty."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (float(rate.count), now))
        tokens = min(float(rate.count), tokens + (now - last) * rate.count / rate.per)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def retain(self, rules: Iterable[Rule]) -> None:
        """Forget the buckets of rules no longer in the policy (after a reload); buckets
        not tied to a rule (the notify executor's) are kept."""
        live = {_RULE + r.identity for r in rules if r.rate is not None}
        self._buckets = {
            k: v for k, v in self._buckets.items() if not k[0].startswith(_RULE) or k[0] in live
        }


_RULE = "rule:"
