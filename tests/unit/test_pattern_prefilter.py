"""The literal prefilter in front of the triggers' union regexes: it may let a string
through that no pattern matches, never rule out one that a pattern does match."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from policy.patterns.glob import parse_glob
from policy.patterns.prefilter import prefilter
from policy.patterns.regex import RegexError, parse_regex
from policy.patterns.syntax import compile_node, fixed_suffix, longest_infix

GLOB_CHARS = "ab/._*?[]!-"
TEXT_CHARS = "ab/._-"


@settings(max_examples=600, deadline=None)
@given(
    st.lists(st.text(GLOB_CHARS, min_size=0, max_size=8), min_size=1, max_size=4),
    st.text(TEXT_CHARS, max_size=12),
)
@example(["*a*b*"], "a_b")
@example(["[ab]x*", "*y?"], "bx")
def test_no_string_a_glob_matches_is_ruled_out(globs: list[str], text: str) -> None:
    nodes = [parse_glob(g) for g in globs]
    if any(compile_node(n).fullmatch(text) for n in nodes):
        assert prefilter(nodes).admits(text)


@settings(max_examples=600, deadline=None)
@given(st.text("ab/.*+?|()[]^$\\", min_size=1, max_size=10), st.text(TEXT_CHARS, max_size=12))
def test_no_string_a_regex_matches_is_ruled_out(pattern: str, text: str) -> None:
    try:
        node = parse_regex(pattern)
    except RegexError:
        return
    if compile_node(node).fullmatch(text):
        assert prefilter([node]).admits(text)


def test_literal_ends_and_insides_are_what_is_tested() -> None:
    globs = ["/etc/cron*", "*/.bashrc", "*/.config/systemd/*", "*.service"]
    cheap = prefilter([parse_glob(g) for g in globs])
    assert cheap.starts == ("/etc/cron",)
    assert cheap.ends == ("/.bashrc", ".service")
    assert cheap.contains == ("/.config/systemd/",)
    for hit in ("/etc/crontab", "/home/a/.bashrc", "/h/.config/systemd/u/x", "/x.service"):
        assert cheap.admits(hit)
    for miss in ("/dev/null", "/home/a/work/main.c", "/etc/passwd", ""):
        assert not cheap.admits(miss)


def test_a_glob_without_any_literal_admits_everything() -> None:
    cheap = prefilter([parse_glob("/etc/x"), parse_glob("*?*")])
    assert cheap.always and cheap.admits("anything at all")


def test_one_character_literals_are_still_tested_in_full() -> None:
    cheap = prefilter([parse_glob("x*"), parse_glob("*y")])
    assert cheap.admits("xa") and cheap.admits("ay") and not cheap.admits("ab")


def test_the_suffix_of_alternatives_is_what_they_share() -> None:
    assert fixed_suffix(parse_regex("(ab|cb)")) == "b"
    assert fixed_suffix(parse_regex("a(b|)")) == ""
    assert longest_infix(parse_glob("*ab*abc*")) == "abc"
