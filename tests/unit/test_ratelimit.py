"""Token buckets per rule and source workload, on a controllable clock."""

from policy import load_policy_texts
from supervisor.actions import POLICY_CATALOG
from supervisor.ratelimit import RateLimiter
from tests.helpers.rules import rule

TEXT = rule("status", rate="3/min")


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


def test_a_reload_that_keeps_a_rule_keeps_its_bucket():
    limiter = RateLimiter(Clock())
    for _ in range(3):
        limiter.allow(rule(), "a")
    again = rule()  # the same rule, compiled again by a reload
    limiter.retain([again])
    assert not limiter.allow(again, "a")


def test_a_reload_that_edits_a_rule_starts_its_bucket_afresh():
    limiter, r = RateLimiter(Clock()), rule()
    for _ in range(3):
        limiter.allow(r, "a")
    edited = load_policy_texts(
        [("r.toml", TEXT.replace("3/min", "4/min"))], POLICY_CATALOG, {}
    ).rules[0]
    limiter.retain([edited])
    assert limiter.allow(edited, "a")


def test_a_reload_keeps_buckets_that_belong_to_no_rule():
    # The notify executor's own rate: today's reload refilled it every time.
    from policy.model import Rate

    limiter, rate = RateLimiter(Clock()), Rate(count=1, per=60.0, text="1/min")
    assert limiter.take(("notify:1/min", "a"), rate)
    limiter.retain([rule()])
    assert not limiter.take(("notify:1/min", "a"), rate)
