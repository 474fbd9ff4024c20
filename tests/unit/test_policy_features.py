"""Groups, built-in groups, targets, rates, approvers, tests tables, explain and lint."""

from __future__ import annotations

import pytest

from policy import (
    PolicyError,
    PolicyTestError,
    evaluate,
    explain,
    lint,
    load_policy_dir,
    load_policy_texts,
)
from policy.quantities import parse_duration, parse_grant, parse_rate
from supervisor.actions import POLICY_CATALOG, normalise_params
from tests.helpers.rules import groups, policy_test, rule

WORKLOADS = {"a": frozenset({"red"}), "b": frozenset(), "c": frozenset({"red"})}


def load(text: str, **kw):
    return load_policy_texts([("t.toml", text)], POLICY_CATALOG, WORKLOADS, **kw)


def test_groups_expand_to_their_actions():
    p = load(groups(read=["status"]) + rule("@read"))
    assert evaluate(p, "a", "status", None, {}).decision == "allow"
    assert evaluate(p, "a", "open-url", None, {"url": "https://x/"}).decision == "deny"


def test_builtin_readonly_and_mutating_groups_exist_without_definition():
    p = load(rule("@readonly"))
    assert p.groups["readonly"] == frozenset(
        {"status", "open-url", "search", "notify", "capabilities"}
    )
    assert p.groups["mutating"] == frozenset(
        {
            "install-app",
            "egress-allow",
            "sync-out",
            "workload-start",
            "workload-stop",
            "workload-restart",
            "run-ops",
        }
    )
    assert evaluate(p, "a", "open-url", "b", {"url": "https://x/"}).decision == "allow"
    assert evaluate(p, "a", "install-app", None, {"package": "vim"}).decision == "deny"


@pytest.mark.parametrize(
    "groups, fragment",
    [
        ('[groups]\nread = ["reboot"]\n', "unknown actions"),
        ('[groups]\nreadonly = ["status"]\n', "built-in"),
        ('[groups]\nstatus = ["status"]\n', "built-in group or an action"),
        ("[groups]\nempty = []\n", "empty"),
        ('[groups]\nread = "status"\n', "list"),
    ],
)
def test_bad_groups_are_errors(groups, fragment):
    with pytest.raises(PolicyError, match=fragment):
        load(groups)


def test_constraint_on_a_group_needs_the_param_in_every_member():
    with pytest.raises(PolicyError, match="not a param of"):
        load(rule("@readonly", params={"url": '"x"'}, dotted=True))


def test_target_patterns():
    p = load(
        rule("open-url", "*", "deny", "@default")
        + rule("open-url", "*", "ask", "@self")
        + rule("open-url", "*", "allow", "@tag:red")
    )
    url = {"url": "https://a.org/"}
    assert evaluate(p, "a", "open-url", None, url).decision == "deny"
    assert evaluate(p, "a", "open-url", "a", url).decision == "ask"
    assert evaluate(p, "a", "open-url", "c", url).decision == "allow"
    assert evaluate(p, "a", "open-url", "b", url).decision == "deny"


def test_sources_not_compiled_against_are_still_decided():
    p = load(rule("status", "*"))
    assert evaluate(p, "newcomer", "status", None, {}).decision == "allow"
    q = load(rule("status", "@tag:red"))
    assert evaluate(q, "newcomer", "status", None, {}).decision == "deny"


@pytest.mark.parametrize(
    "text, count, per",
    [
        ("10/min", 10, 60),
        ("5/30s", 5, 30),
        ("100/hour", 100, 3600),
        ("1/day", 1, 86400),
        ("3 / 2 minutes", 3, 120),
        ("7/sec", 7, 1),
    ],
)
def test_rate_specs(text, count, per):
    r = parse_rate(text)
    assert (r.count, r.per) == (count, per)


@pytest.mark.parametrize("text", ["ten/min", "0/min", "5/fortnight", "5", "/min"])
def test_bad_rate_specs(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_unknown_approver_is_an_error():
    with pytest.raises(PolicyError, match="unknown approvers"):
        load(rule("status", "*", "ask", approvers=["pager"]))


# --- [[test]] tables -----------------------------------------------------------------

TESTED = rule("open-url", "a", params={"url": '{ domain = "*.ok.org" }'}, dotted=True)


def test_passing_tests_load():
    p = load(
        TESTED
        + policy_test(
            "a", "open-url", "allow", params={"url": '"https://x.OK.org/"'}, rule="t.toml:1"
        ),
        normalise=normalise_params,
    )
    assert len(p.tests) == 1


def test_a_failing_test_refuses_the_policy_with_its_position():
    text = TESTED + policy_test("a", "open-url", "allow", params={"url": '"https://evil.org/"'})
    with pytest.raises(PolicyTestError) as info:
        load(text, normalise=normalise_params)
    assert info.value.line == 8
    assert "expected allow, got deny" in info.value.message


def test_a_test_with_invalid_params_fails():
    text = TESTED + policy_test("a", "open-url", "deny", params={"url": '"ftp://x.ok.org/"'})
    with pytest.raises(PolicyTestError, match="params invalid"):
        load(text, normalise=normalise_params)


def test_tests_directory_is_read_and_may_hold_only_tests(tmp_path):
    d = tmp_path / "policy.d"
    (d / "tests").mkdir(parents=True)
    (d / "10.toml").write_text(rule("status", "a"))
    (d / "tests" / "must.toml").write_text(policy_test("b", "status", "deny"))
    p = load_policy_dir(d, POLICY_CATALOG, WORKLOADS, display_root=tmp_path)
    assert [t.where for t in p.tests] == ["policy.d/tests/must.toml:1"]
    (d / "tests" / "bad.toml").write_text(rule("status"))
    with pytest.raises(PolicyError, match="unknown top-level key 'rule'"):
        load_policy_dir(d, POLICY_CATALOG, WORKLOADS, display_root=tmp_path)


def test_an_edit_that_undoes_a_must_deny_is_refused(tmp_path):
    d = tmp_path / "policy.d"
    (d / "tests").mkdir(parents=True)
    (d / "tests" / "never.toml").write_text(policy_test("b", "status", "deny"))
    (d / "10.toml").write_text(rule("status", "a"))
    load_policy_dir(d, POLICY_CATALOG, WORKLOADS)
    (d / "10.toml").write_text(rule("status", "*"))  # quietly widened
    with pytest.raises(PolicyTestError, match="expected deny, got allow"):
        load_policy_dir(d, POLICY_CATALOG, WORKLOADS)


# --- explain -------------------------------------------------------------------------


def test_explain_gives_a_reason_for_every_earlier_rule():
    p = load(
        rule("status", "b")
        + rule("status", "*", "deny", "@default")
        + rule("open-url")
        + rule("status", params={}, dotted=True)
    )
    ex = explain(p, "a", "status", "c", {})
    assert ex.ruling.rule_name == "t.toml:19"
    assert [s.matched for s in ex.steps] == [False, False, True]
    assert "source 'b' does not cover 'a'" in ex.steps[0].reason
    assert "target '@default'" in ex.steps[1].reason
    assert ex.other_actions == 1


def test_explain_names_the_failing_constraint():
    p = load(TESTED)
    ex = explain(p, "a", "open-url", None, {"url": "https://evil.org/"})
    assert ex.ruling.rule is None
    assert "param url = 'https://evil.org/' fails: url host is one of" in ex.steps[0].reason


# --- lint ----------------------------------------------------------------------------


def lint_messages(text, available=("cli",)):
    return [f"{f.where}: {f.message}" for f in lint(load(text), POLICY_CATALOG, available)]


def test_lint_finds_a_rule_shadowed_by_an_earlier_catch_all():
    msgs = lint_messages(rule("*", "*", "deny") + rule("status", "a"))
    assert any("t.toml:7: never decides: rule t.toml:1" in m for m in msgs)


def test_lint_does_not_flag_a_narrower_earlier_rule():
    msgs = lint_messages(rule("status", "a") + rule("status"))
    assert not any("never decides" in m for m in msgs)


def test_lint_finds_an_ask_nobody_can_answer():
    msgs = lint_messages(rule("status", "*", "ask", approvers=["telegram"]))
    assert any("ask with no approver" in m for m in msgs)
    assert not any(
        "ask with no approver" in m
        for m in lint_messages(rule("status", "*", "ask", approvers=["cli"]))
    )


def test_lint_finds_unknown_workloads_and_tags():
    msgs = lint_messages(rule("status", "ghost") + rule("status", "*", "allow", "@tag:blue"))
    assert any("'ghost', which is not in workloads.toml" in m for m in msgs)
    assert any("no workload has this tag" in m for m in msgs)


# --- grants and quorum on ask rules --------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [("once", 0.0), ("always", float("inf")), ("30m", 1800.0), ("2h", 7200.0), ("45s", 45.0)],
)
def test_grant_specs(text, seconds):
    assert parse_grant(text) == seconds


def test_durations_refuse_nonsense():
    for bad in ("soon", "0m", "5 fortnights", "-3m"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_grant_and_quorum_are_kept_on_ask_rules():
    p = load(rule("status", "*", "ask", grant="30m", quorum=2))
    assert (p.rules[0].grant_max, p.rules[0].quorum) == (1800.0, 2)


def test_grant_on_an_allow_rule_is_an_error():
    with pytest.raises(PolicyError, match="only mean something on an ask rule"):
        load(rule("status", grant="always"))
