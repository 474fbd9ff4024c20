"""What a human sees is what will run: nothing invisible, nothing re-ordered."""

import pytest

from supervisor.approvals.sanitize import shown, visible


@pytest.mark.parametrize(
    "raw, safe",
    [
        ("plain https://a.org/x?q=1", "plain https://a.org/x?q=1"),
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
        ("evil\u202egnp.exe", "evil\\u202egnp.exe"),
        ("a\u200bb\u200dc\ufeffd", "a\\u200bb\\u200dc\\ufeffd"),
        ("line\nbreak\r", "line\\x0abreak\\x0d"),
        ("nul\x00here", "nul\\x00here"),
        ("\u2066isolate\u2069", "\\u2066isolate\\u2069"),
        ("del\x7f c1\x9b", "del\\x7f c1\\x9b"),
        ("emoji 🙂 and ü stay", "emoji 🙂 and ü stay"),
    ],
)
def test_invisible_and_control_characters_become_visible(raw, safe):
    assert visible(raw) == safe


def test_long_values_are_cut_with_a_marker():
    text, cut = shown("x" * 500, 100)
    assert cut and text.startswith("x" * 100) and "400 more characters" in text
    assert shown("short", 100) == ("short", False)


def test_escapes_are_counted_after_making_them_visible():
    text, cut = shown("\u202e" * 10, 20)
    assert cut and "\u202e" not in text


def test_a_literal_escape_and_a_real_control_character_never_look_alike():
    assert visible("\x1b") != visible("\\x1b")
    assert visible("\\x1b") == "\\\\x1b"


def test_blank_looking_characters_and_long_space_runs_are_escaped():
    assert visible("a\u00a0b\u3000c\u2800d") == "a\\xa0b\\u3000c\\u2800d"
    assert visible("a" + " " * 40 + "rule x") == "a" + "\\x20" * 40 + "rule x"
    assert visible("two  spaces stay") == "two  spaces stay"
