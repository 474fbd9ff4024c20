"""Globs and the regex subset: one syntax tree, read the way fnmatch and re read them,
and automata that accept exactly what the emitted regex matches."""

from __future__ import annotations

import fnmatch
import re
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.patterns.glob import parse_glob
from policy.patterns.nfa import NFA
from policy.patterns.regex import RegexError, parse_regex
from policy.patterns.search import shortest
from policy.patterns.syntax import compile_node

GLOB_PARTS = ["a", "b", "-", "!", "]", "*", "?", "[", "/", "."]
REGEX_PARTS = [
    "a",
    "b",
    ".",
    "*",
    "+",
    "?",
    "|",
    "(",
    ")",
    "[",
    "]",
    "^",
    "-",
    "{1,2}",
    "{2}",
    r"\d",
    r"\w",
    r"\.",
    "(?:",
    ",",
    "{",
    "}",
]
texts = st.text(alphabet="ab-!]/[.1_ ,{}\n", max_size=6)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(GLOB_PARTS), max_size=7).map("".join), st.lists(texts, max_size=8))
def test_glob_matches_as_fnmatch_does(pattern, samples):
    compiled = compile_node(parse_glob(pattern))
    for s in samples:
        assert (compiled.fullmatch(s) is not None) == fnmatch.fnmatchcase(s, pattern)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(REGEX_PARTS), max_size=7).map("".join), st.lists(texts, max_size=8))
def test_supported_regexes_match_as_python_re_does_on_ascii(pattern, samples):
    try:
        node = parse_regex(pattern)
    except RegexError:
        return
    compiled = compile_node(node)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = re.compile(pattern)
    for s in samples:
        assert (compiled.fullmatch(s) is not None) == (original.fullmatch(s) is not None)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(REGEX_PARTS), max_size=7).map("".join), st.lists(texts, max_size=8))
def test_the_automaton_accepts_exactly_what_the_emitted_regex_matches(pattern, samples):
    try:
        node = parse_regex(pattern)
    except RegexError:
        return
    nfa, compiled = NFA.of(node), compile_node(node)
    for s in samples:
        assert nfa.accepts(s) == (compiled.fullmatch(s) is not None)


@settings(max_examples=800, deadline=None)
@given(
    st.lists(st.sampled_from(REGEX_PARTS), max_size=6).map("".join),
    st.lists(st.sampled_from(REGEX_PARTS), max_size=6).map("".join),
)
def test_a_witness_is_in_one_language_and_not_the_other(a, b):
    try:
        na, nb = parse_regex(a), parse_regex(b)
    except RegexError:
        return
    for s in shortest([NFA.of(na)], [NFA.of(nb)], limit=3):
        assert compile_node(na).fullmatch(s) and not compile_node(nb).fullmatch(s)


def test_no_witness_is_a_proof_for_equal_languages():
    a = NFA.of(parse_regex(r"(ab|a)(c|bc)"))
    b = NFA.of(parse_regex(r"abc|abbc|ac"))
    assert shortest([a], [b]) == [] and shortest([b], [a]) == []


@pytest.mark.parametrize(
    "pattern",
    [r"(a)\1", r"(?=a)a", r"(?i)a", r"a\b", "a*+", r"\p{L}", "a$b", "a^", "[[:alpha:]]", "a{2000}"],
)
def test_regex_features_outside_the_subset_are_refused(pattern):
    with pytest.raises(RegexError):
        parse_regex(pattern)


def test_ascii_classes_do_not_take_other_scripts():
    assert not compile_node(parse_regex(r"\d+")).fullmatch("٣")  # Arabic-Indic three
    assert compile_node(parse_regex(r"\d+")).fullmatch("42")


def test_an_open_lower_bound_repeats_from_zero_as_python_reads_it():
    # `a{,}` was taken as the literal text "a{,}" while Python's re (and so anyone
    # testing a rule with it) reads `a*`.
    for pattern, matching, other in [("a{,}", "aaa", "a{,}"), ("a{,2}", "aa", "aaa")]:
        compiled = compile_node(parse_regex(pattern))
        assert compiled.fullmatch("") and compiled.fullmatch(matching)
        assert not compiled.fullmatch(other)
