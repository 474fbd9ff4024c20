"""TOML policy files: [[rule]] tables, file:line on every rule, first match wins, default deny."""

from __future__ import annotations

import pytest

from policy import PolicyError, evaluate, load_policy_dir, load_policy_texts
from supervisor.actions import POLICY_CATALOG
from tests.helpers.rules import rule

WORKLOADS = {"a": frozenset(), "b": frozenset(), "c": frozenset()}


def load(text: str):
    return load_policy_texts([("t.toml", text)], POLICY_CATALOG, WORKLOADS)


RULES = (
    "\n# comment line\n"
    + rule("status", "a")
    + rule(
        "open-url",
        "*",
        "ask",
        "@self",
        timeout=5,
        params={"url": '{ glob = "https://*.example.org/*" }'},
    )
    + rule("open-url", "a", "allow", "b", params={"url": '"https://exact.example/"'}, dotted=True)
)


def test_first_matching_rule_wins_and_names_file_and_line():
    p = load(RULES)
    v = evaluate(p, "a", "status", None, {})
    assert (v.decision, v.rule_name) == ("allow", "t.toml:3")


def test_nothing_matching_is_default_deny():
    v = evaluate(load(RULES), "b", "status", None, {})
    assert (v.decision, v.rule_name) == ("deny", "default")


def test_empty_policy_denies_everything():
    v = evaluate(load(""), "a", "status", None, {})
    assert v.decision == "deny" and v.rule is None


def test_glob_constraint_and_self_target():
    p = load(RULES)
    ok = evaluate(p, "a", "open-url", "a", {"url": "https://www.example.org/x"})
    assert (ok.decision, ok.rule_name, ok.rule.timeout) == ("ask", "t.toml:9", 5)
    other_target = evaluate(p, "a", "open-url", "c", {"url": "https://www.example.org/x"})
    assert other_target.decision == "deny"
    no_match = evaluate(p, "a", "open-url", "a", {"url": "https://evil.com/x"})
    assert no_match.decision == "deny"


def test_exact_constraint_written_as_dotted_key():
    p = load(RULES)
    assert (
        evaluate(p, "a", "open-url", "b", {"url": "https://exact.example/"}).rule_name
        == "t.toml:18"
    )
    assert evaluate(p, "a", "open-url", "b", {"url": "https://exact.example/x"}).decision == "deny"


def test_star_target_matches_a_missing_target():
    p = load(rule("status", "a"))
    assert evaluate(p, "a", "status", None, {}).decision == "allow"
    assert evaluate(p, "a", "status", "a", {}).decision == "allow"


def test_exact_match_is_type_strict():
    from policy.constraints import Exact

    assert not Exact(param="n", value=1).matches(True)
    assert not Exact(param="n", value=1).matches("1")
    assert Exact(param="n", value=1).matches(1)


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        (
            '[[rule]]\naction = "status"\nsource = "a"\ntarget = "*"\ndecision = "maybe"\n',
            5,
            "decision",
        ),
        (
            '[[rule]]\naction = "reboot"\nsource = "a"\ntarget = "*"\ndecision = "allow"\n',
            2,
            "unknown action or group",
        ),
        (
            '[[rule]]\naction = "open-url"\nsource = "a"\ntarget = "*"\ndecision = "allow"\n'
            'params.path = "x"\n',
            6,
            "'path' is not a param",
        ),
        (
            '[[rule]]\naction = "status"\nsource = "a b"\ntarget = "*"\ndecision = "allow"\n',
            3,
            "source",
        ),
        (
            '[[rule]]\naction = "status"\nsource = "a"\ntarget = "*"\ndecision = "allow"\n'
            'colour = "red"\n',
            6,
            "colour",
        ),
        ('[[rule]]\naction = "status"\nsource = "a"\ndecision = "allow"\n', 1, "target"),
        (
            '[[rule]]\naction = "status"\nsource = "a"\ntarget = "*"\ndecision = "allow"\n'
            "timeout = -1\n",
            6,
            "timeout",
        ),
        (
            '[[rule]]\naction = "status"\nsource = "a"\ntarget = "*"\ndecision = "allow"\n'
            "params = { x = 1 }\n",
            6,
            "param",
        ),
        (
            '[[rule]]\naction = "open-url"\nsource = "a"\ntarget = "*"\ndecision = "allow"\n'
            "params.url = 5\n",
            6,
            "str",
        ),
        ('[[rule]]\naction = "status"\nsource = "a"\n  target = = "*"\n', 4, "Invalid"),
        ('rule = [{action = "status"}]\n', 1, "[[rule]]"),
        ('[[rules]]\naction = "status"\n', 1, "top-level"),
    ],
)
def test_bad_files_are_errors_with_file_and_line(text, line, fragment):
    with pytest.raises(PolicyError) as info:
        load(text)
    assert info.value.file == "t.toml"
    assert info.value.line == line, str(info.value)
    assert fragment.lower() in str(info.value).lower()


def test_directory_is_read_in_name_order_and_rules_keep_their_file(tmp_path):
    d = tmp_path / "policy.d"
    d.mkdir()
    (d / "20-b.toml").write_text(rule("status", "a", "deny"))
    (d / "10-a.toml").write_text("\n" + rule("status", "a"))
    (d / "README").write_text("not policy")
    (d / ".hidden.toml").write_text("garbage [[")
    p = load_policy_dir(d, POLICY_CATALOG, WORKLOADS, display_root=tmp_path)
    assert p.files == ("policy.d/10-a.toml", "policy.d/20-b.toml")
    assert evaluate(p, "a", "status", None, {}).rule_name == "policy.d/10-a.toml:2"


def test_one_broken_file_fails_the_whole_directory(tmp_path):
    d = tmp_path / "policy.d"
    d.mkdir()
    (d / "10-a.toml").write_text(rule("status", "a"))
    (d / "20-b.toml").write_text('[[rule]]\naction="status"\n')
    with pytest.raises(PolicyError) as info:
        load_policy_dir(d, POLICY_CATALOG, WORKLOADS, display_root=tmp_path)
    assert info.value.file == "policy.d/20-b.toml"


def test_an_empty_policy_directory_is_refused_not_taken_for_deny_all(tmp_path):
    from policy import PolicyError, load_policy_dir
    from supervisor.actions import POLICY_CATALOG

    (tmp_path / "policy.d").mkdir()
    with pytest.raises(PolicyError, match="no policy files"):
        load_policy_dir(tmp_path / "policy.d", POLICY_CATALOG, {})


def test_a_policy_directory_removed_while_read_is_refused(tmp_path, monkeypatch):
    import policy.load as load

    d = tmp_path / "policy.d"
    d.mkdir()
    (d / "10.toml").write_text('[[rule]]\naction = "status"\ndecision = "allow"\n')
    real = load._names

    def names_then_remove(dir_fd, suffixes):
        out = real(dir_fd, suffixes)
        if suffixes != (".toml",):
            for p in d.iterdir():
                p.unlink()
            d.rmdir()
        return out

    monkeypatch.setattr(load, "_names", names_then_remove)
    with pytest.raises(OSError, match="removed while it was read"):
        load.read_policy_dir(d)
