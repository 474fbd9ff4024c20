"""Token buckets per rule and source workload, on a controllable clock."""

from policy import load_policy_texts
from supervisor.catalog import POLICY_CATALOG
from supervisor.ratelimit import RateLimiter

TEXT = (
    '[[rule]]\naction = "status"\nsource = "*"\ntarget = "*"\ndecision = "allow"\nrate = "3/min"\n'
)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def rule():
    return load_policy_texts([("r.toml", TEXT)], POLICY_CATALOG, {}).rules[0]


def test_burst_up_to_the_count_then_refused():
    clock, r = Clock(), rule()
    limiter = RateLimiter(clock)
    assert [limiter.allow(r, "a") for _ in range(4)] == [True, True, True, False]


def test_each_source_has_its_own_bucket():
    limiter, r = RateLimiter(Clock()), rule()
    for _ in range(3):
        limiter.allow(r, "a")
    assert not limiter.allow(r, "a")
    assert limiter.allow(r, "b")


def test_tokens_come_back_at_the_rate():
    clock, r = Clock(), rule()
    limiter = RateLimiter(clock)
    for _ in range(3):
        limiter.allow(r, "a")
    clock.now += 19.0
    assert not limiter.allow(r, "a")
    clock.now += 1.5  # 20.5 s at 3/min is one token
    assert limiter.allow(r, "a")
    assert not limiter.allow(r, "a")


def test_retain_forgets_rules_gone_after_reload():
    limiter, r = RateLimiter(Clock()), rule()
    for _ in range(3):
        limiter.allow(r, "a")
    limiter.retain([])
    assert limiter.allow(r, "a")
