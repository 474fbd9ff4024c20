"""qrexec-style `.policy` lines, side by side with TOML files."""

from __future__ import annotations

import pytest

from policy import PolicyError, evaluate, load_policy_dir, load_policy_texts
from supervisor.actions import POLICY_CATALOG
from tests.helpers.rules import groups, rule

WORKLOADS = {
    "sys-clawd": frozenset(),
    "dom0": frozenset(),
    "work": frozenset({"trusted"}),
    "play": frozenset(),
}
GROUPS = (groups(ClawdRead=["status"], ClawdWrite=["open-url"]), "00-groups.toml")


def load(text: str, *extra: tuple[str, str]):
    return load_policy_texts(
        [(GROUPS[1], GROUPS[0]), *extra, ("30.policy", text)], POLICY_CATALOG, WORKLOADS
    )


def test_the_issue_example_loads_once_its_groups_exist():
    p = load(
        "ClawdRead   *   sys-clawd   dom0   allow\n"
        "ClawdWrite  *   sys-clawd   dom0   ask,default_target=dom0\n"
    )
    v = evaluate(p, "sys-clawd", "status", "dom0", {})
    assert (v.decision, v.rule_name) == ("allow", "30.policy:1")
    w = evaluate(p, "sys-clawd", "open-url", "dom0", {"url": "https://x.org/"})
    assert (w.decision, w.rule.default_target) == ("ask", "dom0")


def test_v2_space_separated_params_and_default_target():
    p = load("open-url * @anyvm @default ask default_target=work timeout=5\n")
    v = evaluate(p, "play", "open-url", None, {"url": "https://x.org/"})
    assert v.decision == "ask" and v.rule.default_target == "work" and v.rule.timeout == 5
    assert evaluate(p, "play", "open-url", "work", {"url": "https://x.org/"}).decision == "deny"


def test_plus_argument_matches_the_primary_param_exactly():
    p = load("open-url +https://a.org/ * * allow\n")
    assert evaluate(p, "play", "open-url", "work", {"url": "https://a.org/"}).decision == "allow"
    assert evaluate(p, "play", "open-url", "work", {"url": "https://a.org/x"}).decision == "deny"


def test_tags_and_anyvm():
    p = load("status * @tag:trusted @anyvm allow\n")
    assert evaluate(p, "work", "status", "play", {}).decision == "allow"
    assert evaluate(p, "play", "status", "work", {}).decision == "deny"
    assert evaluate(p, "work", "status", None, {}).decision == "deny"  # @anyvm needs a target


def test_comments_and_blank_lines_are_ignored():
    p = load("# a comment\n\n   \nstatus * * * allow # trailing\n")
    assert len(p.rules) == 1 and p.rules[0].line == 4


@pytest.mark.parametrize(
    "line, col, fragment",
    [
        ("!include foo\n", 1, "directive"),
        ("status * *\n", 11, "expected SERVICE"),
        ("status * * * maybe\n", 14, "allow, ask or deny"),
        ("status x * * allow\n", 8, "ARG"),
        ("status * * * ask,user=root\n", 18, "user="),
        ("status * * * allow target=dom0\n", 20, "target="),
        ("status * * * allow colour=red\n", 20, "unknown param"),
        ("status * @dispvm * allow\n", 10, "not supported"),
        ("status * * @dispvm:x allow\n", 12, "not supported"),
        ("reboot * * * allow\n", 1, "unknown action or group"),
        ("status * bad!name * allow\n", 10, "source"),
        ("status * * * deny default_target=dom0\n", 19, "deny"),
        ("status * * * allow rate=lots\n", 20, "rate"),
        ("status * * * ask timeout=abc\n", 18, "timeout"),
        ("status * * * allow default_target\n", 20, "NAME=VALUE"),
    ],
)
def test_tokens_the_model_cannot_honour_are_errors_with_line_and_column(line, col, fragment):
    with pytest.raises(PolicyError) as info:
        load("# first line is a comment\n" + line)
    assert (info.value.file, info.value.line, info.value.column) == ("30.policy", 2, col)
    assert fragment.lower() in info.value.message.lower()


def test_policy_and_toml_files_load_side_by_side_in_name_order(tmp_path):
    d = tmp_path / "policy.d"
    d.mkdir()
    (d / "00-groups.toml").write_text(GROUPS[0])
    (d / "10-first.policy").write_text("ClawdRead * play * deny\n")
    (d / "20-second.toml").write_text(rule("@ClawdRead"))
    (d / "30-third.policy").write_text("open-url * * * ask\n")
    p = load_policy_dir(d, POLICY_CATALOG, WORKLOADS, display_root=tmp_path)
    assert p.files == (
        "policy.d/00-groups.toml",
        "policy.d/10-first.policy",
        "policy.d/20-second.toml",
        "policy.d/30-third.policy",
    )
    assert [r.where for r in p.rules] == [
        "policy.d/10-first.policy:1",
        "policy.d/20-second.toml:1",
        "policy.d/30-third.policy:1",
    ]
    assert evaluate(p, "play", "status", None, {}).decision == "deny"
    assert evaluate(p, "work", "status", None, {}).decision == "allow"
