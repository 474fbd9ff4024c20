"""Params have their real types, and nothing loads that silently does nothing (issue 18).

Each test here failed on cf8b4c0: a sensible rule refused, a rule that loaded and never
matched, or one that crashed the daemon or allowed more than it says.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from policy import PolicyError, evaluate, explain, lint, load_policy_texts, runs_on
from supervisor.actions import FORMATS, POLICY_CATALOG, normalise_params
from tests.helpers import rules

WORKLOADS = {"dom0": frozenset(), "sys-clawd": frozenset(), "r": frozenset({"trusted"})}


def load(text: str, name: str = "t.toml"):
    return load_policy_texts([(name, text)], POLICY_CATALOG, WORKLOADS)


def rule(action: str, params: dict[str, str] | None = None, **fields: Any) -> str:
    """rules.rule() from r on @self unless `fields` say otherwise; params (raw TOML values)
    as dotted keys, so the first param, or the first of `fields`, is on line 6."""
    fields = {"source": "r", "target": "@self", "decision": "allow", **fields}
    return rules.rule(action, params=params, dotted=True, **fields)


def refused(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        load(text)
    return info.value


# --- 1. params have their real types ---------------------------------------------------


@pytest.mark.parametrize(
    "action, param, kind",
    [
        ("egress-allow", "port", "int"),
        ("egress-allow", "ttl", "int"),
        ("egress-allow", "host", "str (a host name)"),
        ("open-url", "url", "str (a URL)"),
        ("sync-out", "paths", "list of str (relative paths)"),
        ("run-ops", "args", "list of str"),
        ("run-ops", "script", "str"),
    ],
)
def test_catalog_types_come_from_the_params_structs_unwrapped(action, param, kind):
    assert POLICY_CATALOG[action].types[param].describe() == kind


def test_optional_port_is_known_to_be_missing_sometimes_and_bounded():
    port = POLICY_CATALOG["egress-allow"].types["port"]
    assert (port.optional, port.low, port.high) == (True, 1, 65535)


def test_every_format_entry_names_a_string_param():
    for (action, param), _ in FORMATS.items():
        assert POLICY_CATALOG[action].types[param].scalar == "str"


def test_egress_allow_can_be_limited_to_a_port():
    p = load(rule("egress-allow", {"host": '"security.debian.org"', "port": "443"}))
    host = {"host": "security.debian.org", "ttl": 3600}
    assert evaluate(p, "r", "egress-allow", None, {**host, "port": 443}).decision == "allow"
    assert evaluate(p, "r", "egress-allow", None, {**host, "port": 80}).decision == "deny"
    # No port means every port: a rule limited to 443 does not allow that.
    assert evaluate(p, "r", "egress-allow", None, host).decision == "deny"


def test_ttl_range_loads_and_bounds_the_ttl():
    p = load(rule("egress-allow", {"ttl": "{ range = [60, 3600] }"}))
    assert evaluate(p, "r", "egress-allow", None, {"host": "a.org", "ttl": 60}).decision == "allow"
    assert evaluate(p, "r", "egress-allow", None, {"host": "a.org", "ttl": 7200}).decision == "deny"


def test_an_int_outside_the_params_bounds_is_refused_in_words():
    err = refused(rule("egress-allow", {"port": "70000"}))
    assert (err.line, err.column) == (6, 1)
    assert "port is at most 65535, so 70000 never matches" in err.message


@pytest.mark.parametrize(
    "constraint",
    ['{ under = "exports" }', '{ glob = "exports/*" }', '{ prefix = "exports/" }'],
)
def test_element_constraints_on_sync_out_paths_match_every_element(constraint):
    p = load(rule("sync-out", {"paths": constraint}))
    ok = {"paths": ["exports/a.txt", "exports/b/c"]}
    assert evaluate(p, "r", "sync-out", None, ok).decision == "allow"
    bad = {"paths": ["exports/a.txt", "secrets/key"]}
    assert evaluate(p, "r", "sync-out", None, bad).decision == "deny"


def test_explain_agrees_with_evaluate_on_a_list_param():
    p = load(rule("sync-out", {"paths": '{ under = "exports" }'}))
    params = {"paths": ["exports/a.txt"]}
    ex = explain(p, "r", "sync-out", None, params)
    assert ex.ruling == evaluate(p, "r", "sync-out", None, params)
    assert ex.ruling.decision == "allow"
    assert ex.steps[0].reason == "matches"


def test_one_of_on_run_ops_args_evaluates_each_element_without_raising():
    p = load(rule("run-ops", {"args": '{ one_of = ["--dry-run", "origin"] }'}))
    ok = {"script": "sync", "args": ["origin", "--dry-run"]}
    assert evaluate(p, "r", "run-ops", None, ok).decision == "allow"
    assert evaluate(p, "r", "run-ops", None, {"script": "sync", "args": ["x"]}).decision == "deny"


def test_an_exact_list_value_matches_that_list_only():
    p = load(rule("run-ops", {"args": '["origin"]'}))
    assert (
        evaluate(p, "r", "run-ops", None, {"script": "s", "args": ["origin"]}).decision == "allow"
    )
    for args in (["origin", "x"], [], ["x"]):
        assert evaluate(p, "r", "run-ops", None, {"script": "s", "args": args}).decision == "deny"


def test_an_empty_exact_list_allows_no_arguments_only():
    p = load(rule("run-ops", {"args": "[]"}))
    assert evaluate(p, "r", "run-ops", None, {"script": "s", "args": []}).decision == "allow"
    assert evaluate(p, "r", "run-ops", None, {"script": "s", "args": ["a"]}).decision == "deny"


def test_a_single_value_on_a_list_param_is_refused_with_the_two_ways_to_say_it():
    err = refused(rule("run-ops", {"args": '"origin"'}))
    assert err.where == "t.toml:6:1"
    assert "give the whole list (args = ['origin'])" in err.message
    assert "a constraint on each element" in err.message


@pytest.mark.parametrize(
    "action, params, fragment",
    [
        (
            "egress-allow",
            'params.port = { glob = "4*" }',
            "glob cannot constrain 'port', which is int",
        ),
        ("open-url", "params.url = { range = [1, 2] }", "range cannot constrain 'url'"),
        ("egress-allow", 'params.port = "443"', "port is int, so str '443' never matches"),
        ("search", 'params.query = { domain = "a.org" }', "domain constrains the host of a URL"),
        ("run-ops", 'params.args = { domain = "a.org" }', "domain constrains the host of a URL"),
        ("open-url", 'params.url = { under = "/x" }', "under constrains paths"),
        ("open-url", 'params.url = ["https://a.org/"]', "not a list"),
        ("run-ops", "params.args = [1]", "are not str"),
        ("egress-allow", "params.port = { one_of = [1, 70000] }", "at most 65535"),
    ],
)
def test_a_constraint_that_cannot_apply_to_the_params_type_is_a_load_error(
    action, params, fragment
):
    name, value = params.removeprefix("params.").split(" = ", 1)  # each case: one params line
    err = refused(rule(action, {name: value}))
    assert (err.line, err.column) == (6, 1), err
    assert fragment in err.message


def test_plus_argument_on_a_list_primary_means_that_one_element_list():
    p = load("sync-out +exports/a.txt r @self allow\n", "t.policy")
    assert evaluate(p, "r", "sync-out", None, {"paths": ["exports/a.txt"]}).decision == "allow"
    assert evaluate(p, "r", "sync-out", None, {"paths": ["exports/b"]}).decision == "deny"


# --- 2. nothing loads that silently does nothing ---------------------------------------


@pytest.mark.parametrize("action", ["status", "capabilities", "notify", "install-app"])
def test_self_target_on_an_action_without_a_workload_is_refused_with_position(action):
    err = refused(rule(action))
    assert err.where == "t.toml:4:1"
    assert f"target '@self' never matches {action}" in err.message


def test_self_target_on_a_group_warns_for_the_members_it_never_matches():
    p = load(rule("*"))
    found = [f.message for f in lint(p, POLICY_CATALOG, ["cli"])]
    assert any(
        "target '@self' never matches capabilities, install-app, notify, status" in m for m in found
    )


def test_the_qubes_default_target_line_decides_untargeted_intents_on_that_target():
    policy = load_policy_texts(
        [
            ("00.toml", rules.groups(ClawdWrite=["workload-restart"])),
            ("10.policy", "ClawdWrite  *    sys-clawd  dom0      ask,default_target=dom0\n"),
        ],
        POLICY_CATALOG,
        WORKLOADS,
    )
    v = evaluate(policy, "sys-clawd", "workload-restart", None, {})
    assert (v.decision, v.rule_name) == ("ask", "10.policy:1")
    assert runs_on(policy, v.rule, "sys-clawd", "workload-restart", None) == "dom0"
    assert evaluate(policy, "sys-clawd", "workload-restart", "dom0", {}).decision == "ask"
    assert evaluate(policy, "sys-clawd", "workload-restart", "r", {}).decision == "deny"


def test_default_target_that_is_not_the_named_target_is_refused():
    err = refused(rule("open-url", target="dom0", default_target="r", decision="ask"))
    assert err.where == "t.toml:6:1"
    assert "default_target 'r' is not the rule's target 'dom0'" in err.message


def test_default_target_under_a_tag_it_lacks_warns():
    p = load(rule("open-url", target="@tag:trusted", default_target="dom0", decision="ask"))
    found = [f.message for f in lint(p, POLICY_CATALOG, ["cli"])]
    assert any("default_target 'dom0' is not covered by target '@tag:trusted'" in m for m in found)


def test_self_with_default_target_is_still_refused():
    err = refused(rule("open-url", default_target="dom0", decision="ask"))
    assert "default_target cannot go with target = '@self'" in err.message


def test_url_glob_matches_per_part_so_the_readme_example_cannot_cross_the_host():
    p = load(rule("open-url", {"url": '{ glob = "https://*.a.org/*" }'}))
    for url, decision in [
        ("https://x.a.org/page", "allow"),
        ("https://x.y.a.org/", "allow"),
        ("https://evil.com/.a.org/x", "deny"),
        ("https://evil.com/x.a.org/", "deny"),
        ("https://a.org/", "deny"),
        ("https://x.a.org:8443/", "deny"),
    ]:
        assert evaluate(p, "r", "open-url", None, {"url": url}).decision == decision, url


@pytest.mark.parametrize(
    "glob",
    ["https://*a.org/*", "https://a.org*", "*://a.org/*", "*", "ftp://a.org/*", "https://a*.org/"],
)
def test_url_globs_whose_host_is_not_a_domain_name_are_refused(glob):
    err = refused(rule("open-url", {"url": f'{{ glob = "{glob}" }}'}))
    assert err.where == "t.toml:6:1"


def test_a_url_prefix_must_go_past_the_host():
    err = refused(rule("open-url", {"url": '{ prefix = "https://docs.a.org" }'}))
    assert "must go past the host" in err.message
    p = load(rule("open-url", {"url": '{ prefix = "https://docs.a.org/" }'}))
    assert (
        evaluate(p, "r", "open-url", None, {"url": "https://docs.a.org.evil.net/"}).decision
        == "deny"
    )


def test_a_constraint_no_valid_request_satisfies_is_warned():
    p = load(rule("open-url", {"url": '"HTTPS://A.ORG/"'}))
    found = [f for f in lint(p, POLICY_CATALOG, ["cli"])]
    assert any(f.where == "t.toml:1" and "never matches open-url" in f.message for f in found)


@pytest.mark.parametrize(
    "text, seconds", [('"30s"', 30), ('"2m"', 120), ("45", 45), ('"1h"', 3600)]
)
def test_timeout_takes_durations(text, seconds):
    # Each case is written as a TOML value that is also JSON, the form rules.rule() writes.
    p = load(rule("open-url", decision="ask", timeout=json.loads(text)))
    assert p.rules[0].timeout == seconds


def test_qrexec_timeout_takes_durations():
    p = load("open-url * r @self ask timeout=2m\n", "t.policy")
    assert p.rules[0].timeout == 120


def test_timeout_nonsense_is_refused_in_words():
    err = refused(rule("open-url", decision="ask", timeout="soon"))
    assert err.where == "t.toml:6:1"
    assert "timeout must be seconds (60) or a duration (30s, 2m)" in err.message


def test_action_may_be_a_list():
    p = load(rule(["open-url", "search"], decision="ask"))
    assert evaluate(p, "r", "search", None, {"query": "x"}).decision == "ask"
    assert evaluate(p, "r", "open-url", None, {"url": "https://a.org/"}).decision == "ask"
    assert evaluate(p, "r", "status", None, {}).decision == "deny"


def test_an_unknown_action_in_a_list_is_named():
    err = refused(rule(["open-url", "opne-url"], target="*", decision="ask"))
    assert err.where == "t.toml:2:1" and "'opne-url'" in err.message


@pytest.mark.parametrize(
    "action, target, params, words",
    [
        ("status", "bad name", {}, "target must be a workload name: letters, digits and '-'"),
        ("run-ops", None, {"script": "a/b"}, "script must be a script name in ops/ (no '/')"),
    ],
)
def test_decoder_errors_name_the_rule_in_words_not_a_regex(action, target, params, words):
    with pytest.raises(ValueError) as info:
        normalise_params(action, target, params)
    assert str(info.value) == words
    assert "(?" not in str(info.value)
