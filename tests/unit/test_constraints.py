"""Constraint kinds, each against hostile values."""

from __future__ import annotations

import pytest

from policy.constraints import parse_constraint


def c(kind, spec, param="p"):
    return parse_constraint(param, kind, spec)


# --- domain ------------------------------------------------------------------------

DOMAIN = {"domain": ["example.com", "*.example.org"]}


@pytest.mark.parametrize(
    "value",
    [
        "example.com",
        "EXAMPLE.com",
        "example.com.",
        "https://example.com/x",
        "https://EXAMPLE.COM:8443/x?y#z",
        "a.example.org",
        "a.b.example.org",
        "https://deep.sub.example.org/",
        "A.Example.Org.",
    ],
)
def test_domain_matches_listed_hosts_and_subdomains_of_wildcards(value):
    assert c("str", DOMAIN).matches(value)


@pytest.mark.parametrize(
    "value",
    [
        "evilexample.com",
        "example.com.evil.net",
        "example.org",  # bare suffix of a wildcard
        "evilexample.org",
        "aexample.org",
        "https://example.org/",
        "https://example.com@evil.net/",
        "https://evil.net\\@example.com/",
        "https://evil.net#@example.com",
        "https://evil.net/?x=example.com",
        "https://example.com\x00.evil.net/",
        "example..com",
        ".example.com",
        "https://xn--exmple-cua.com/",  # punycode of a look-alike (exämple.com)
        "https://exаmple.com/",  # Cyrillic 'а'
        "example.com/path",
        "user@example.com",
        "example.com:80",
        "",
        "https://",
        "https://a.example.org.evil.net/",
        "javascript://example.com/%0aalert(1)",
    ],
)
def test_domain_refuses_look_alikes_and_tricks(value):
    assert not c("str", DOMAIN).matches(value)


def test_domain_pattern_with_unicode_is_idna_normalised():
    rule = c("str", {"domain": "bücher.example"})
    assert rule.matches("https://xn--bcher-kva.example/")
    assert rule.matches("BÜCHER.example")


def test_domain_wildcard_never_matches_the_bare_name():
    rule = c("str", {"domain": "*.example.com"})
    assert not rule.matches("example.com")
    assert rule.matches("x.example.com")


@pytest.mark.parametrize("bad", ["*", "*.", "a.*.com", "exa mple.com", "", "*example.com"])
def test_bad_domain_patterns_are_load_errors(bad):
    with pytest.raises(ValueError):
        c("str", {"domain": bad})


# --- path-under ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "exports",
        "exports/a.txt",
        "exports//a.txt",
        "./exports/a",
        "exports/./b/c",
    ],
)
def test_under_relative_base(value):
    assert c("str", {"under": "exports"}).matches(value)


@pytest.mark.parametrize(
    "value",
    [
        "exports/../secret",
        "../exports/a",
        "exports/..",
        "/exports/a",
        "exportsX/a",
        "exp",
        "exports/a\x00b",
        "",
        "secret",
        "..",
        "exports/../../etc/passwd",
    ],
)
def test_under_refuses_escapes_and_neighbours(value):
    assert not c("str", {"under": "exports"}).matches(value)


@pytest.mark.parametrize(
    "value, ok",
    [
        ("/srv/share/a", True),
        ("//srv//share/a", True),
        ("/srv/share", True),
        ("/srv/shared/a", False),
        ("/srv/share/../x", False),
        ("srv/share/a", False),
        ("/srv/./share/a", True),
        ("/", False),
    ],
)
def test_under_absolute_base(value, ok):
    assert c("str", {"under": "/srv/share"}).matches(value) is ok


def test_under_on_a_list_param_checks_every_element_and_refuses_empty():
    rule = c("list", {"under": "out"})
    assert rule.matches(["out/a", "out/b"])
    assert not rule.matches(["out/a", "../b"])
    assert not rule.matches([])


def test_under_base_with_dotdot_is_a_load_error():
    with pytest.raises(ValueError):
        c("str", {"under": "a/../b"})


# --- regex, glob, prefix -------------------------------------------------------------


@pytest.mark.parametrize(
    "value, ok",
    [
        ("cats", True),
        ("cats\n", False),
        ("xcats", False),
        ("catsx", False),
        ("CATS", False),
        ("cats\ndogs", False),
        ("", False),
    ],
)
def test_regex_is_anchored_at_both_ends(value, ok):
    assert c("str", {"regex": "cats|dogs"}).matches(value) is ok


def test_regex_with_dollar_does_not_accept_a_trailing_newline():
    assert not c("str", {"regex": "[a-z]+$"}).matches("abc\n")


def test_bad_regex_is_a_load_error():
    with pytest.raises(ValueError, match="bad regex"):
        c("str", {"regex": "(unclosed"})


def test_glob_is_whole_string_and_case_sensitive():
    g = c("str", {"glob": "https://*.wiki.org/*"})
    assert g.matches("https://en.wiki.org/x")
    assert not g.matches("HTTPS://en.wiki.org/x")
    assert not g.matches("https://en.wiki.org")


def test_prefix():
    p = c("str", {"prefix": "https://docs."})
    assert p.matches("https://docs.example/") and not p.matches("http://docs.example/")


# --- range, one_of, exact, types -----------------------------------------------------


def test_range_is_inclusive_and_rejects_bools_and_strings():
    r = c("int", {"range": [10, 20]})
    assert r.matches(10) and r.matches(20) and not r.matches(21)
    assert not r.matches(True) and not r.matches("15") and not r.matches(None)


def test_one_of_is_type_strict():
    o = c("str", {"one_of": ["a", "b"]})
    assert o.matches("a") and not o.matches("c")
    with pytest.raises(ValueError):
        c("int", {"one_of": ["1"]})


def test_missing_value_never_matches_any_kind():
    for kind, spec in (
        ("str", "x"),
        ("str", {"glob": "*"}),
        ("str", {"regex": ".*"}),
        ("str", {"prefix": ""}),
        ("int", {"range": [0, 9]}),
    ):
        assert not c(kind, spec).matches(None)


@pytest.mark.parametrize(
    "kind, spec",
    [
        ("int", {"glob": "*"}),
        ("int", {"domain": "a.com"}),
        ("str", {"range": [1, 2]}),
        ("str", 5),
        ("int", "5"),
        ("str", {"glob": "*", "regex": ".*"}),
        ("str", {}),
        ("str", {"nearly": "x"}),
        ("int", {"range": [5, 1]}),
    ],
)
def test_wrong_kind_or_shape_is_a_load_error(kind, spec):
    with pytest.raises((ValueError, TypeError)):
        c(kind, spec)
