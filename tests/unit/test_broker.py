"""The approvals broker, in-process: binding, quorum, dedupe, caps, timeouts, agents, leftovers."""

from __future__ import annotations

import asyncio
import json

from policy import load_policy_texts
from supervisor.approvals import Broker, deny_leftovers
from supervisor.catalog import POLICY_CATALOG


def rule(extra=""):
    text = (
        '[[rule]]\naction = "open-url"\nsource = "*"\ntarget = "*"\ndecision = "ask"\n'
        f"timeout = 5\n{extra}\n"
    )
    return load_policy_texts([("r.toml", text)], POLICY_CATALOG, {"w": frozenset()}).rules[0]


class Agent:
    def __init__(self, agent="cli"):
        self.agent = agent
        self.events = []

    def push(self, data: bytes) -> None:
        self.events.append(json.loads(data))


def make(tmp_path=None, **kw):
    records = []
    broker = Broker(
        lambda r: records.append(r) or True, (tmp_path / "pending.json") if tmp_path else None, **kw
    )
    return broker, records


def ask(broker, url="https://a.org/", r=None, workload="w", intent_id="i1"):
    return asyncio.ensure_future(
        broker.ask(
            intent_id=intent_id,
            workload=workload,
            action="open-url",
            target=workload,
            params={"url": url},
            rule=r or rule(),
        )
    )


def vote(broker, p, *, digest=None, allow=True, agent="cli", principal="uid:0", reason=None):
    """A verdict on pending request `p` (quoting its own digest unless told otherwise)."""
    return broker.verdict(
        pending_id=p["id"],
        digest=digest or p["digest"],
        allow=allow,
        agent=agent,
        principal=principal,
        grant=0.0,
        reason=reason,
    )


async def settle():
    for _ in range(3):
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
        ok, msg, *_ = vote(broker, offered)
        assert ok and msg == "approved"
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
        ok, msg, *_ = vote(broker, new, digest=old["digest"])
        assert not ok and "digest" in msg
        assert records[-1].outcome == "verdict_refused"
        assert not second.done()
        second.cancel()

    asyncio.run(main())


def test_quorum_two_needs_two_distinct_approvers():
    async def main():
        broker, _ = make()
        agent = Agent()
        broker.subscribe(agent)
        task = ask(broker, r=rule("quorum = 2"))
        await settle()
        p = agent.events[0]["request"]
        v = dict(
            pending_id=p["id"], digest=p["digest"], allow=True, agent="cli", grant=0.0, reason=None
        )
        assert broker.verdict(principal="uid:1000", **v)[1] == "vote recorded"
        again = broker.verdict(principal="uid:1000", **v)
        assert not again[0] and "already approved" in again[1]
        assert not task.done()
        assert broker.verdict(principal="uid:1001", **v)[1] == "approved"
        assert (await task).approvers == ("cli uid:1000", "cli uid:1001")

    asyncio.run(main())


def test_fifty_identical_asks_share_one_prompt():
    async def main():
        broker, records = make()
        agent = Agent()
        broker.subscribe(agent)
        tasks = [ask(broker, intent_id=f"i{n}") for n in range(50)]
        await settle()
        assert len([e for e in agent.events if e["event"] == "pending"]) == 1
        p = agent.events[0]["request"]
        vote(broker, p, allow=False, reason="no")
        results = await asyncio.gather(*tasks)
        assert {r.outcome for r in results} == {"denied"}
        assert sum(1 for r in records if r.outcome == "offered") == 1

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
        r = rule().__class__(
            **{
                **{f: getattr(rule(), f) for f in rule().__struct_fields__},
                "timeout": 0.05,
                "verdict": None,
                "where": "",
            }
        )
        res = await broker.ask(
            intent_id="t",
            workload="w",
            action="open-url",
            target="w",
            params={"url": "https://a.org/"},
            rule=r,
        )
        assert res.outcome == "timeout"
        assert records[-1].outcome == "timeout"

    asyncio.run(main())


def test_agents_only_see_requests_their_kind_may_answer():
    async def main():
        broker, _ = make()
        tg, cli = Agent("telegram"), Agent("cli")
        broker.subscribe(tg)
        broker.subscribe(cli)
        task = ask(broker, r=rule('approvers = ["cli"]'))
        await settle()
        assert tg.events == [] and len(cli.events) == 1
        p = cli.events[0]["request"]
        refused = vote(broker, p, agent="telegram", principal="telegram:1")
        assert not refused[0]
        task.cancel()

    asyncio.run(main())


def test_grant_beyond_what_the_rule_allows_is_refused():
    async def main():
        broker, _ = make()
        agent = Agent()
        broker.subscribe(agent)
        task = ask(broker, r=rule('grant = "30m"'))
        await settle()
        p = agent.events[0]["request"]
        v = dict(
            pending_id=p["id"],
            digest=p["digest"],
            allow=True,
            agent="cli",
            principal="uid:0",
            reason=None,
        )
        assert not broker.verdict(grant=float("inf"), **v)[0]
        assert broker.verdict(grant=1800.0, **v)[1] == "approved"
        assert (await task).grant == 1800.0

    asyncio.run(main())


def test_pending_requests_are_recorded_and_denied_after_a_crash(tmp_path):
    crashed = tmp_path / "left-by-a-crash.json"

    async def main():
        broker, _ = make(tmp_path)
        task = ask(broker)
        await settle()
        # What a SIGKILL now would leave behind:
        crashed.write_bytes((tmp_path / "pending.json").read_bytes())
        task.cancel()

    asyncio.run(main())
    assert json.loads((tmp_path / "pending.json").read_text()) == []  # clean exit: cleared
    (tmp_path / "pending.json").write_bytes(crashed.read_bytes())
    assert len(json.loads(crashed.read_text())) == 1
    records = []
    assert deny_leftovers(tmp_path / "pending.json", lambda r: records.append(r) or True) == 1
    assert records[0].outcome == "unavailable" and "stopped" in records[0].message
    assert json.loads((tmp_path / "pending.json").read_text()) == []


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
