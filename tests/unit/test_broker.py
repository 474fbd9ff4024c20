"""The approvals broker, in-process: binding, one release per verdict, quorum, grants,
caps, deadlines, withdrawal, the state file, and leftovers after a crash."""

from __future__ import annotations

import asyncio
import json

from policy import load_policy_texts
from supervisor.actions import POLICY_CATALOG
from supervisor.approvals.broker import Broker
from supervisor.approvals.leftovers import deny_leftovers
from supervisor.approvals.prompt import GrantRequest
from tests.helpers import rules


def rule(timeout=5, **extra):
    """The compiled `ask` rule for open-url, from anyone to anywhere; `extra` as rules.rule's."""
    text = rules.rule("open-url", "*", "ask", timeout=timeout, **extra)
    return load_policy_texts([("r.toml", text)], POLICY_CATALOG, {"w": frozenset()}).rules[0]


class Agent:
    def __init__(self, agent="cli"):
        self.agent = agent
        self.events = []

    def push(self, data: bytes) -> None:
        self.events.append(json.loads(data))

    def last(self, rid=None):
        """The latest view of a request as pushed (the newest `pending` event for it)."""
        for e in reversed(self.events):
            if e["event"] == "pending" and (rid is None or e["request"]["id"] == rid):
                return e["request"]
        raise AssertionError("no pending event")


def make(tmp_path=None, **kw):
    records = []
    grants = []

    def record_grant(request: GrantRequest) -> str:
        grants.append(request)
        return f"g-{len(grants):010x}"

    broker = Broker(
        lambda r: records.append(r) or True,
        (tmp_path / "pending.json") if tmp_path else None,
        record_grant=record_grant,
        **kw,
    )
    broker.grants = grants
    return broker, records


def ask(broker, url="https://a.org/", r=None, workload="w", intent_id="i1", withdrawn=None):
    return asyncio.ensure_future(
        broker.ask(
            intent_id=intent_id,
            workload=workload,
            action="open-url",
            target=workload,
            params={"url": url},
            rule=r or rule(),
            withdrawn=withdrawn,
        )
    )


def vote(
    broker,
    p,
    *,
    digest=None,
    allow=True,
    agent="cli",
    principal="uid:0",
    reason=None,
    grant=0.0,
    release=1,
):
    """A verdict on pending request `p` (quoting its own digest unless told otherwise)."""
    return broker.verdict(
        pending_id=p["id"],
        digest=digest or p["digest"],
        allow=allow,
        agent=agent,
        principal=principal,
        grant=grant,
        reason=reason,
        release=release,
    )


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


def test_approval_resolves_the_ask_and_withdraws_other_prompts():
    async def main():
        broker, records = make()
        a, b = Agent("cli"), Agent("desktop")
        broker.subscribe(a)
        broker.subscribe(b)
        task = ask(broker)
        await settle()
        offered = a.events[0]["request"]
        assert b.events[0]["request"]["id"] == offered["id"]
        taken = vote(broker, offered)
        assert taken.accepted and taken.decided and taken.released == 1
        res = await task
        assert res.outcome == "approved" and res.approvers == ("cli uid:0",)
        assert b.events[-1] == {
            "event": "withdrawn",
            "id": offered["id"],
            "reason": "approved",
            "by": "cli uid:0",
        }
        assert [r.outcome for r in records] == ["offered", "vote", "approved"]

    asyncio.run(main())


def test_a_verdict_quoting_another_intents_digest_is_refused():
    async def main():
        broker, records = make()
        agent = Agent()
        broker.subscribe(agent)
        first = ask(broker, "https://a.org/")
        await settle()
        old = agent.events[0]["request"]
        vote(broker, old)
        await first
        second = ask(broker, "https://a.org/CHANGED")
        await settle()
        new = agent.events[-1]["request"]
        taken = vote(broker, new, digest=old["digest"])
        assert not taken.accepted and "digest" in taken.message
        assert records[-1].outcome == "verdict_refused"
        assert not second.done()
        second.cancel()

    asyncio.run(main())


def test_quorum_two_needs_two_distinct_approvers():
    async def main():
        broker, _ = make()
        agent = Agent()
        broker.subscribe(agent)
        task = ask(broker, r=rule(quorum=2))
        await settle()
        p = agent.events[0]["request"]
        assert vote(broker, p, principal="uid:1000").message == "vote recorded"
        again = vote(broker, p, principal="uid:1000")
        assert not again.accepted and "already approved" in again.message
        assert not task.done()
        assert vote(broker, p, principal="uid:1001").message == "approved"
        assert (await task).approvers == ("cli uid:1000", "cli uid:1001")

    asyncio.run(main())


def test_identical_asks_share_one_prompt_that_says_how_many_wait():
    async def main():
        broker, records = make()
        agent = Agent()
        broker.subscribe(agent)
        tasks = [ask(broker, intent_id=f"i{n}") for n in range(50)]
        await settle()
        ids = {e["request"]["id"] for e in agent.events if e["event"] == "pending"}
        assert len(ids) == 1
        assert agent.last()["waiting"] == 50
        # A burst of identical asks is one update, not fifty.
        assert len(agent.events) <= 3
        assert sum(1 for r in records if r.outcome == "offered") == 1
        for t in tasks:
            t.cancel()

    asyncio.run(main())


def test_once_releases_exactly_one_of_the_identical_waiters():
    async def main():
        broker, _ = make()
        agent = Agent()
        broker.subscribe(agent)
        tasks = [ask(broker, intent_id=f"i{n}") for n in range(128)]
        await settle()
        p = agent.last()
        taken = vote(broker, p)
        await settle()
        assert taken.released == 1 and taken.still_waiting == 127
        done = [t for t in tasks if t.done()]
        assert len(done) == 1 and done[0] is tasks[0]  # the oldest
        assert done[0].result().outcome == "approved"
        # The same verdict again is refused: the prompt's digest changed with the release.
        again = vote(broker, p)
        assert not again.accepted and "digest" in again.message
        assert sum(t.done() for t in tasks) == 1
        shown = agent.last(p["id"])
        assert shown["waiting"] == 127 and shown["digest"] != p["digest"]
        for t in tasks:
            t.cancel()

    asyncio.run(main())


def test_allow_all_releases_the_number_shown_and_no_more():
    async def main():
        broker, _ = make()
        agent = Agent()
        broker.subscribe(agent)
        tasks = [ask(broker, intent_id=f"i{n}") for n in range(10)]
        await settle()
        p = agent.last()
        assert p["waiting"] == 10
        late = [ask(broker, intent_id=f"late{n}") for n in range(3)]  # joined after it was shown
        await settle()
        taken = vote(broker, p, release=p["waiting"])
        await settle()
        assert taken.released == 10 and taken.still_waiting == 3
        assert all(t.done() and t.result().outcome == "approved" for t in tasks)
        assert not any(t.done() for t in late)
        for t in late:
            t.cancel()

    asyncio.run(main())


def test_an_approval_with_a_grant_records_one_grant_and_releases_every_waiter():
    async def main():
        broker, _ = make()
        agent = Agent()
        broker.subscribe(agent)
        tasks = [ask(broker, intent_id=f"i{n}", r=rule(grant="30m")) for n in range(50)]
        await settle()
        taken = vote(broker, agent.last(), grant=1800.0)
        results = await asyncio.gather(*tasks)
        assert taken.released == 50
        assert len(broker.grants) == 1 and broker.grants[0].seconds == 1800.0
        assert {r.grant_id for r in results} == {"g-0000000001"}

    asyncio.run(main())


def test_a_deny_refuses_every_identical_waiter():
    async def main():
        broker, _ = make()
        agent = Agent()
        broker.subscribe(agent)
        tasks = [ask(broker, intent_id=f"i{n}") for n in range(5)]
        await settle()
        vote(broker, agent.last(), allow=False, reason="no")
        results = await asyncio.gather(*tasks)
        assert {r.outcome for r in results} == {"denied"}
        assert {r.reason for r in results} == {"no"}

    asyncio.run(main())


def test_asks_decided_by_different_rules_never_share_a_prompt():
    async def main():
        broker, _ = make()
        agent = Agent()
        broker.subscribe(agent)
        loose = ask(broker, r=rule())
        strict = ask(broker, r=rule(quorum=2), intent_id="i2")
        await settle()
        ids = {e["request"]["id"] for e in agent.events if e["event"] == "pending"}
        assert len(ids) == 2
        loose_view = next(e["request"] for e in agent.events if e["request"]["quorum"] == 1)
        vote(broker, loose_view)
        assert (await loose).outcome == "approved"
        await settle()
        assert not strict.done()
        strict.cancel()

    asyncio.run(main())


def test_a_withdrawn_waiter_leaves_and_the_last_one_withdraws_the_prompt():
    async def main():
        broker, records = make()
        agent = Agent()
        broker.subscribe(agent)
        loop = asyncio.get_running_loop()
        gone_a, gone_b = loop.create_future(), loop.create_future()
        a = ask(broker, intent_id="a", withdrawn=gone_a)
        b = ask(broker, intent_id="b", withdrawn=gone_b)
        await settle()
        p = agent.last()
        gone_a.set_result("the gateway disconnected")
        assert (await a).outcome == "withdrawn"
        await settle()
        assert agent.last(p["id"])["waiting"] == 1
        assert not any(e["event"] == "withdrawn" for e in agent.events)
        gone_b.set_result("cancelled")
        assert (await b).outcome == "withdrawn"
        assert agent.events[-1]["event"] == "withdrawn"
        assert agent.events[-1]["reason"] == "withdrawn"
        assert records[-1].outcome == "withdrawn"
        # Approving it afterwards releases nothing.
        assert not vote(broker, p).accepted

    asyncio.run(main())


def test_the_eleventh_pending_request_of_a_workload_is_rate_limited():
    async def main():
        broker, _ = make(max_pending_per_workload=10)
        tasks = [ask(broker, f"https://a.org/{n}") for n in range(10)]
        await settle()
        eleventh = await broker.ask(
            intent_id="x",
            workload="w",
            action="open-url",
            target="w",
            params={"url": "https://a.org/11"},
            rule=rule(),
        )
        assert eleventh.outcome == "rate_limited"
        other = ask(broker, "https://a.org/x", workload="v")
        await settle()
        assert not other.done()  # another workload is not affected
        for t in [*tasks, other]:
            t.cancel()

    asyncio.run(main())


def test_no_answer_times_out():
    async def main():
        broker, records = make()
        res = await broker.ask(
            intent_id="t",
            workload="w",
            action="open-url",
            target="w",
            params={"url": "https://a.org/"},
            rule=rule(timeout=0.05),
        )
        assert res.outcome == "timeout"
        assert records[-1].outcome == "timeout"

    asyncio.run(main())


def test_each_waiter_keeps_its_own_deadline():
    async def main():
        broker, _ = make()
        r = rule(timeout=0.3)
        first = ask(broker, r=r, intent_id="first")
        await asyncio.sleep(0.2)
        second = ask(broker, r=r, intent_id="second")
        assert (await first).outcome == "timeout"
        assert not second.done()  # it joined later: its own 0.3 s are not over
        assert (await second).outcome == "timeout"

    asyncio.run(main())


def test_agents_only_see_requests_their_kind_may_answer():
    async def main():
        broker, _ = make()
        tg, cli = Agent("telegram"), Agent("cli")
        broker.subscribe(tg)
        broker.subscribe(cli)
        task = ask(broker, r=rule(approvers=["cli"]))
        await settle()
        assert tg.events == [] and len(cli.events) == 1
        p = cli.events[0]["request"]
        refused = vote(broker, p, agent="telegram", principal="telegram:1")
        assert not refused.accepted
        task.cancel()

    asyncio.run(main())


def test_grant_beyond_what_the_rule_allows_is_refused():
    async def main():
        broker, _ = make()
        agent = Agent()
        broker.subscribe(agent)
        task = ask(broker, r=rule(grant="30m"))
        await settle()
        p = agent.events[0]["request"]
        assert not vote(broker, p, grant=float("inf")).accepted
        assert vote(broker, p, grant=1800.0).message == "approved"
        assert (await task).grant_id is not None

    asyncio.run(main())


def test_pending_requests_are_recorded_and_denied_after_a_crash(tmp_path):
    crashed = tmp_path / "left-by-a-crash.json"

    async def main():
        broker, _ = make(tmp_path)
        tasks = [ask(broker, intent_id=f"i{n}") for n in range(3)]
        await settle()
        await broker.saved()
        # What a SIGKILL now would leave behind: one entry per waiting intent.
        crashed.write_bytes((tmp_path / "pending.json").read_bytes())
        for t in tasks:
            t.cancel()
        await settle()
        await broker.saved()

    asyncio.run(main())
    assert json.loads((tmp_path / "pending.json").read_text()) == []  # clean exit: cleared
    (tmp_path / "pending.json").write_bytes(crashed.read_bytes())
    assert len(json.loads(crashed.read_text())) == 3
    records = []
    assert deny_leftovers(tmp_path / "pending.json", lambda r: records.append(r) or True) == 3
    assert {r.intent_id for r in records} == {"i0", "i1", "i2"}
    assert all(r.final == 1 and r.outcome == "unavailable" for r in records)
    assert "stopped" in records[0].message
    assert json.loads((tmp_path / "pending.json").read_text()) == []


def test_an_unwritable_state_directory_answers_unavailable_and_shows_nobody(tmp_path):
    state = tmp_path / "state"
    state.mkdir()

    async def main():
        broker2, records2 = make(state)
        agent = Agent()
        broker2.subscribe(agent)
        # Tests run as root, which ignores modes: a directory where the file goes makes
        # every write of it fail (rename onto a directory: EISDIR).
        (state / "pending.json").mkdir()
        res = await ask(broker2)
        assert res.outcome == "unavailable" and "state directory" in res.reason
        assert agent.events == []  # never offered
        assert broker2.pending == []
        # A later identical ask does not join anything stuck: it is answered the same way.
        again = await ask(broker2, intent_id="i2")
        assert again.outcome == "unavailable"
        assert any(r.outcome == "unavailable" for r in records2)

    asyncio.run(main())


def test_param_values_are_shown_safely_and_cut():
    async def main():
        broker, _ = make()
        agent = Agent()
        broker.subscribe(agent)
        task = ask(broker, "https://a.org/" + "\u202e" + "x" * 500)
        await settle()
        p = agent.events[0]["request"]
        assert p["cut"] and "\u202e" not in p["params"]["url"]
        assert "\\u202e" in p["params"]["url"]
        full = broker.show(p["id"])
        assert not full.cut and full.params["url"].endswith("x" * 500)
        task.cancel()

    asyncio.run(main())


def test_closing_answers_everything_unavailable():
    async def main():
        broker, _ = make()
        task = ask(broker)
        await settle()
        broker.close()
        assert (await task).outcome == "unavailable"
        assert (
            await broker.ask(
                intent_id="late",
                workload="w",
                action="open-url",
                target="w",
                params={},
                rule=rule(),
            )
        ).outcome == "unavailable"

    asyncio.run(main())
