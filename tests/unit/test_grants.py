"""Grants on a controllable clock: durations expire, always does not, revoke, persistence."""

import math

from supervisor.approvals.grants import GrantStore, intent_key


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def add(store, seconds, key="k1"):
    return store.add(
        key=key,
        workload="w",
        action="open-url",
        target="w",
        params="{}",
        rule="r:1",
        approvers=["cli uid:0"],
        seconds=seconds,
    )


def test_thirty_minute_grant_expires(tmp_path):
    clock = Clock()
    store = GrantStore(tmp_path / "g.json", clock)
    add(store, 1800)
    clock.now += 1799
    assert store.match("k1") is not None
    clock.now += 2
    assert store.match("k1") is None
    assert store.list() == []


def test_always_never_expires(tmp_path):
    clock = Clock()
    store = GrantStore(tmp_path / "g.json", clock)
    g = add(store, math.inf)
    clock.now += 10 * 365 * 86400
    assert store.match("k1") == g and g.expires is None


def test_grants_match_only_their_exact_intent():
    a = intent_key("w", "open-url", "w", {"url": "https://a.org/"})
    b = intent_key("w", "open-url", "w", {"url": "https://a.org/x"})
    c = intent_key("v", "open-url", "w", {"url": "https://a.org/"})
    assert len({a, b, c}) == 3
    assert a == intent_key("w", "open-url", "w", {"url": "https://a.org/"})


def test_revoke_and_persistence(tmp_path):
    clock = Clock()
    path = tmp_path / "g.json"
    store = GrantStore(path, clock)
    keep = add(store, math.inf, "keep")
    gone = add(store, 600, "gone")
    assert store.revoke(gone.id) == gone
    assert store.revoke(gone.id) is None
    again = GrantStore(path, clock)
    again.load()
    assert [g.id for g in again.list()] == [keep.id]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_revoke_workload_removes_only_that_workloads_grants(tmp_path):
    store = GrantStore(tmp_path / "g.json", Clock())
    add(store, math.inf)
    store.add(
        key="x",
        workload="other",
        action="status",
        target=None,
        params="{}",
        rule="r:1",
        approvers=[],
        seconds=math.inf,
    )
    assert [g.workload for g in store.revoke_workload("w")] == ["w"]
    assert [g.workload for g in store.list()] == ["other"]
