"""What a workload may ask for: the rules that can still decide each action, in words."""

from __future__ import annotations

from policy import load_policy_texts
from policy.reach import may_proceed, reachable
from supervisor.actions import POLICY_CATALOG
from supervisor.capabilities import describe
from supervisor.gateway.describe import description
from supervisor.gateway.skill import render
from tests.helpers.rules import rule

WORKLOADS = {"a": frozenset({"red"}), "b": frozenset()}


def load(text: str):
    return load_policy_texts([("t.toml", text)], POLICY_CATALOG, WORKLOADS)


def names(policy, source):
    return [c.action for c in describe(policy, source)]


def test_an_action_with_an_allow_or_ask_rule_is_listed_and_a_denied_one_is_not():
    p = load(rule("status", "a") + rule("install-app", "a", "ask") + rule("open-url", "a", "deny"))
    assert names(p, "a") == ["status", "install-app"]


def test_a_catch_all_deny_shadows_every_later_rule():
    p = load(rule("status", "a", "deny") + rule("status", "a"))
    assert reachable(p, "a", "status") == p.rules[:1]
    assert names(p, "a") == []


def test_a_conditional_deny_is_kept_before_the_allow_it_carves_out_of():
    secret = {"query": '{ prefix = "secret" }'}
    p = load(rule("search", "a", "deny", params=secret) + rule("search", "a"))
    [cap] = describe(p, "a")
    assert [r.decision for r in cap.rules] == ["deny", "allow"]
    assert cap.rules[0].conditions == ["target: any workload or none", "query starts with 'secret'"]
    assert cap.rules[0].rule == "t.toml:1"


def test_another_workloads_rules_are_invisible():
    p = load(rule("status", "b"))
    assert names(p, "a") == [] and names(p, "b") == ["status"]


def test_tag_sources_apply_to_tagged_workloads():
    p = load(rule("status", "@tag:red"))
    assert names(p, "a") == ["status"] and names(p, "b") == []


def test_ask_rules_carry_approvers_timeout_and_grant():
    p = load(rule("open-url", "a", "ask", timeout=45, approvers=["cli"], grant="1h"))
    [cap] = describe(p, "a")
    [r] = cap.rules
    assert (r.approvers, r.timeout, r.grant) == (["cli"], 45.0, "1h")
    assert "waits for a human to approve (cli; refused after 45 s)" in description(cap)


def test_may_proceed_needs_a_rule_that_is_not_deny():
    p = load(rule("status", "a", "deny", params={}))
    assert not may_proceed(reachable(p, "a", "status"))


def test_the_skill_lists_each_usable_action_with_a_send_line_and_leaves_out_capabilities():
    p = load(rule("search", "a") + rule("capabilities", "a") + rule("notify", "a", "ask"))
    text = render("a", describe(p, "a"))
    assert text.startswith("---\nname: clawvisor\ndescription: ")
    assert "## search" in text and "## notify" in text and "## capabilities" not in text
    assert "clawvisor send search query=<query>" in text
    assert "clawvisor send notify message=<message>" in text
    assert "(search, notify)" in text


def test_the_skill_says_so_when_nothing_is_allowed():
    text = render("b", [])
    assert "allows this workload no actions" in text


def test_each_capability_carries_the_tool_text_and_params_schema_every_gateway_offers():
    deny = rule("search", "a", "deny", params={"query": '{ prefix = "x" }'})
    p = load(deny + rule("search", "a"))
    [cap] = describe(p, "a")
    assert cap.description == description(cap)
    assert "is refused when" in cap.description and "[rule t.toml:1]" in cap.description
    assert cap.params["required"] == ["query"]
    assert "action" not in cap.params["properties"]
