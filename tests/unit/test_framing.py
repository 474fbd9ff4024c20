"""LineFramer: complete lines out, over-long lines refused before they are buffered."""

import pytest

from supervisor.framing import FrameTooLong, LineFramer


def test_lines_split_across_chunks_are_joined():
    f = LineFramer(100)
    assert f.feed(b'{"a"') == []
    assert f.feed(b':1}\n{"b":2}\n{"c"') == [b'{"a":1}', b'{"b":2}']
    assert f.partial == 4


def test_blank_lines_are_skipped():
    assert LineFramer(100).feed(b"\n\r\n  \n{}\n") == [b"{}"]


def test_a_line_at_the_cap_is_accepted():
    assert LineFramer(10).feed(b"x" * 10 + b"\n") == [b"x" * 10]


def test_a_complete_line_over_the_cap_is_refused():
    with pytest.raises(FrameTooLong):
        LineFramer(10).feed(b"x" * 11 + b"\n")


def test_an_unfinished_line_over_the_cap_is_refused_without_waiting_for_newline():
    f = LineFramer(10)
    f.feed(b"x" * 6)
    with pytest.raises(FrameTooLong):
        f.feed(b"x" * 6)
