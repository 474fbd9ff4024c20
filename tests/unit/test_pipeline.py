"""The pipeline in process, as a specification: typed requests in, one outcome and exactly
one final audit record out, with a fake journal sender standing in for journald."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from executors import open_url, status
from policy import PolicyError
from supervisor.pipeline import Job, Outcome
from tests.helpers.inprocess import Env
from tests.helpers.rules import rule


def run(coro):
    return asyncio.run(coro)


def test_an_allowed_read_only_intent_is_answered_with_one_final_record(tmp_path):
    env = Env(tmp_path, rule("status", "w"))
    out = run(env.submit("s1", {"action": "status"}))
    assert out.code is None and isinstance(out.result, status.Result)
    assert out.decision == "allow" and out.rule == "policy.d/10.toml:1"
    [rec] = env.finals_of("s1")
    assert rec["CLAWVISOR_OUTCOME"] == "ok" and rec["CLAWVISOR_DECISION"] == "allow"
    assert len(env.journal.records) == 1  # the one record licenses and ends it


def test_a_denied_intent_ends_in_one_final_deny_record(tmp_path):
    env = Env(tmp_path, rule("status", "v"))
    out = run(env.submit("d1", {"action": "status"}))
    assert out.code == "policy_denied" and out.status == "denied" and out.rule == "default"
    [rec] = env.finals_of("d1")
    assert rec["CLAWVISOR_DECISION"] == "deny" and rec["CLAWVISOR_OUTCOME"] == "policy_denied"


def test_an_unknown_target_is_invalid_params_with_its_own_outcome(tmp_path):
    env = Env(tmp_path, rule("open-url", "w"))
    out = run(env.submit("t1", {"action": "open-url", "target": "nope", "url": "https://a.org/"}))
    assert out.code == "invalid_params" and "unknown workload" in out.message
    assert len(env.finals_of("t1")) == 1


def test_a_workload_the_policy_refuses_cannot_tell_unknown_targets_from_known_ones(tmp_path):
    env = Env(tmp_path, rule("status", "v"))  # nothing for w
    known = run(env.submit("k1", {"action": "open-url", "target": "w", "url": "https://a.org/"}))
    unknown = run(
        env.submit("u1", {"action": "open-url", "target": "zzz", "url": "https://a.org/"})
    )
    assert known.code == unknown.code == "policy_denied"
    assert "zzz" not in unknown.message


def test_a_rate_limited_intent_is_a_deny_in_its_record_and_its_reply(tmp_path):
    env = Env(tmp_path, rule("status", "w", rate="1/min"))
    run(env.submit("r1", {"action": "status"}))
    out = run(env.submit("r2", {"action": "status"}))
    assert out.code == "rate_limited" and out.decision == "deny"
    [rec] = env.finals_of("r2")
    assert rec["CLAWVISOR_DECISION"] == "deny" and rec["CLAWVISOR_OUTCOME"] == "rate_limited"


@pytest.mark.needs_root  # runs the opener as the workload's user
def test_the_record_keeps_the_named_target_apart_from_where_it_runs(tmp_path):
    policy = rule("open-url", "w", "allow", "@default", default_target="v")
    env = Env(tmp_path, policy)
    out = run(env.submit("o1", {"action": "open-url", "url": "https://a.org/"}))
    assert out.code is None and isinstance(out.result, open_url.Result)
    [decision, result] = [r for r in env.journal.records if r.get("CLAWVISOR_INTENT_ID") == "o1"]
    assert "CLAWVISOR_TARGET" not in decision  # the intent named none
    assert decision["CLAWVISOR_RUNS_ON"] == "v"
    assert result["CLAWVISOR_FINAL"] == "1" and result["CLAWVISOR_KIND"] == "result"


def test_self_runs_on_the_sender_and_never_takes_a_default_target(tmp_path):
    with pytest.raises(PolicyError, match="@self"):
        Env(tmp_path, rule("open-url", "*", "allow", "@self", default_target="v"))


@pytest.mark.needs_root  # runs the opener as the workload's user
def test_an_untargeted_self_intent_runs_on_its_sender(tmp_path):
    env = Env(tmp_path, rule("open-url", "*", "allow", "@self"))
    run(env.submit("o2", {"action": "open-url", "url": "https://a.org/"}))
    recs = [r for r in env.journal.records if r.get("CLAWVISOR_INTENT_ID") == "o2"]
    assert {r["CLAWVISOR_RUNS_ON"] for r in recs} == {"w"}


def test_a_constraint_that_raises_costs_that_intent_only(tmp_path):
    env = Env(tmp_path, rule("status", "w"))

    class Exploding:
        param = "x"

        def matches(self, value: object) -> bool:
            raise TypeError("unhashable type: 'list'")

        def describe(self) -> str:
            return "explodes"

    policy = env.state.policy
    bad = msgspec.structs.replace(policy.rules[0], constraints=(Exploding(),), ruling=None)
    env.state.policy = msgspec.structs.replace(
        policy,
        rules=(bad,),
        index={k: (bad,) for k in policy.index},
        by_action={k: (bad,) if v else () for k, v in policy.by_action.items()},
    )
    out = run(env.submit("x1", {"action": "status"}))
    assert out.code == "unavailable" and "internal error" in out.message
    [rec] = env.finals_of("x1")
    assert "TypeError" in rec["MESSAGE"]
    env.state.policy = policy
    assert run(env.submit("x2", {"action": "status"})).code is None


def ask_policy() -> str:
    return rule("open-url", "w", "ask", "@self", timeout=30)


def test_an_ask_approved_after_a_reload_made_it_deny_is_refused(tmp_path):
    env = Env(tmp_path, ask_policy())

    async def main() -> Outcome:
        task = asyncio.ensure_future(
            env.submit("a1", {"action": "open-url", "url": "https://a.org/"})
        )
        while not env.broker.pending:
            await asyncio.sleep(0.01)
        env.state.policy = env.load(rule("open-url", "w", "deny"))
        [p] = env.broker.pending
        env.broker.verdict(
            pending_id=p.id,
            digest=p.digest,
            allow=True,
            agent="cli",
            principal="uid:0",
            grant=0.0,
            reason=None,
        )
        return await task

    out = run(main())
    assert out.code == "approval_denied" and "policy changed" in out.message
    [rec] = env.finals_of("a1")
    assert rec["CLAWVISOR_OUTCOME"] == "approval_denied"
    assert not [r for r in env.journal.records if r.get("CLAWVISOR_KIND") == "result"]


def test_a_withdrawn_ask_is_cancelled_and_recorded_once(tmp_path):
    env = Env(tmp_path, ask_policy())

    async def main() -> Outcome:
        job = Job("a2")
        task = asyncio.ensure_future(
            env.submit("a2", {"action": "open-url", "url": "https://a.org/"}, job)
        )
        while not env.broker.pending:
            await asyncio.sleep(0.01)
        assert job.withdraw("the gateway disconnected")
        return await task

    out = run(main())
    assert out.code == "cancelled"
    [rec] = env.finals_of("a2")
    assert rec["CLAWVISOR_OUTCOME"] == "cancelled"
    assert env.broker.pending == []


def test_an_intent_interrupted_by_shutdown_still_gets_its_outcome(tmp_path):
    env = Env(tmp_path, ask_policy())

    async def main() -> Outcome:
        task = asyncio.ensure_future(
            env.submit("a3", {"action": "open-url", "url": "https://a.org/"})
        )
        while not env.broker.pending:
            await asyncio.sleep(0.01)
        task.cancel()  # what the daemon does to work still running past its drain deadline
        return await task

    out = run(main())
    assert out.code == "unavailable" and "interrupted" in out.message
    assert len(env.finals_of("a3")) == 1


@pytest.mark.needs_root  # runs the opener as the workload's user
def test_with_no_trail_a_mutating_intent_is_refused_and_nothing_runs(tmp_path):
    env = Env(tmp_path, rule("open-url", "w", "allow", "@self"), fallback_ok=False)
    env.journal.down = True
    out = run(env.submit("m1", {"action": "open-url", "url": "https://a.org/"}))
    assert out.code == "unavailable" and "audit trail unavailable" in out.message
    env.journal.down = False
    run(env.submit("m2", {"action": "open-url", "url": "https://a.org/"}))
    # The refusal waited in the backlog and was written, in order, once the trail was back.
    [refusal] = env.finals_of("m1")
    assert refusal["CLAWVISOR_OUTCOME"] == "unavailable"
    assert not [
        r
        for r in env.journal.records
        if r.get("CLAWVISOR_INTENT_ID") == "m1" and r["CLAWVISOR_KIND"] == "result"
    ]


@pytest.mark.needs_root  # runs the opener as the workload's user
def test_a_grant_serves_only_the_rule_it_was_given_under(tmp_path):
    env = Env(tmp_path, rule("open-url", "w", "ask", "@self", timeout=30, grant="30m"))

    async def main() -> tuple[Outcome, str]:
        task = asyncio.ensure_future(
            env.submit("g1", {"action": "open-url", "url": "https://a.org/"})
        )
        while not env.broker.pending:
            await asyncio.sleep(0.01)
        [p] = env.broker.pending
        env.broker.verdict(
            pending_id=p.id,
            digest=p.digest,
            allow=True,
            agent="cli",
            principal="uid:0",
            grant=1800.0,
            reason=None,
        )
        first = await task
        assert first.code is None
        # Same intent, same rule: let through by the grant, without asking.
        again = await env.submit("g2", {"action": "open-url", "url": "https://a.org/"})
        assert again.code is None and env.broker.pending == []
        # A stricter rule in front (quorum 2): the grant is not its grant; it asks.
        env.state.policy = env.load(
            rule("open-url", "w", "ask", "@self", timeout=30, quorum=2, grant="30m")
        )
        job = Job("g3")
        strict = asyncio.ensure_future(
            env.submit("g3", {"action": "open-url", "url": "https://a.org/"}, job)
        )
        while not env.broker.pending:
            await asyncio.sleep(0.01)
        job.withdraw("done looking")
        return await strict

    strict = run(main())
    assert strict.code == "cancelled"
    assert len(env.grants.list()) == 1
    granted = env.finals_of("g2")
    assert granted and granted[0]["CLAWVISOR_OUTCOME"] == "ok"


def test_approval_records_held_while_the_trail_is_down_are_written_after_in_order(tmp_path):
    env = Env(tmp_path, ask_policy(), fallback_ok=False)

    async def main() -> Outcome:
        task = asyncio.ensure_future(
            env.submit("h1", {"action": "open-url", "url": "https://a.org/"})
        )
        while not env.broker.pending:
            await asyncio.sleep(0.01)
        env.journal.down = True  # journald and the fallback both gone while it waits
        [p] = env.broker.pending
        env.broker.verdict(
            pending_id=p.id,
            digest=p.digest,
            allow=True,
            agent="cli",
            principal="uid:0",
            grant=0.0,
            reason=None,
        )
        return await task

    out = run(main())
    # The approval's licence could not be written: it did not run.
    assert out.code == "unavailable" and "not executed" in out.message
    held = len(env.journal.records)
    env.journal.down = False
    run(env.submit("h2", {"action": "status"}))  # any write flushes what waits, first
    later = [(r["CLAWVISOR_KIND"], r.get("CLAWVISOR_OUTCOME")) for r in env.journal.records[held:]]
    assert later[:3] == [
        ("approval", "vote"),
        ("approval", "approved"),
        ("decision", "unavailable"),
    ], later
    assert env.finals_of("h1")[0]["CLAWVISOR_OUTCOME"] == "unavailable"
