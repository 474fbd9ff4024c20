"""`policy check` warns on a rule that lets a workload's words through as a program's own
arguments (run-ops `args`, passed without `--`) with nothing constraining them."""

from __future__ import annotations

from policy import lint, load_policy_texts
from supervisor.actions import POLICY_CATALOG
from tests.helpers.rules import rule


def warnings(text: str) -> list[str]:
    policy = load_policy_texts([("t.toml", text)], POLICY_CATALOG, {"a": frozenset()})
    return [f.message for f in lint(policy, POLICY_CATALOG, ("cli",))]


def test_a_run_ops_rule_with_open_args_is_warned_about():
    msgs = warnings(rule("run-ops", "a", "ask", "@self"))
    assert any("run-ops: params ['args'] reach the program" in m for m in msgs)


def test_a_catch_all_allow_is_warned_about_for_run_ops_args_too():
    assert any("run-ops: params ['args']" in m for m in warnings(rule("*", "a")))


def test_constrained_args_are_not_warned_about():
    constrained = rule("run-ops", "a", "ask", "@self", params={"args": '["origin"]'})
    assert not any("reach the program" in m for m in warnings(constrained))
    one_of = rule("run-ops", "a", "allow", "@self", params={"args": '{ one_of = ["-n", "x"] }'})
    assert not any("reach the program" in m for m in warnings(one_of))


def test_a_deny_rule_is_not_warned_about():
    assert not any("reach the program" in m for m in warnings(rule("run-ops", "a", "deny")))
