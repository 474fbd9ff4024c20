"""LineFramer: complete lines out, over-long lines refused before they are buffered."""

import pytest

from supervisor.wire.framing import FrameTooLong, LineFramer


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


def test_complete_lines_before_an_over_long_one_in_the_same_read_are_kept():
    lines, error = LineFramer(10).feed_until_broken(b"a\nb\nc\n" + b"x" * 11 + b"\nd\n")
    assert lines == [b"a", b"b", b"c"]
    assert isinstance(error, FrameTooLong)


def test_a_broken_stream_refuses_everything_after():
    f = LineFramer(10)
    f.feed_until_broken(b"x" * 11)
    assert f.feed_until_broken(b"\nok\n") == ([], f.broken)


def test_a_line_fed_8_bytes_at_a_time_comes_out_whole():
    # (What it costs, against the old re-splitting framer, is a bench row: bench/framing.py.)
    f = LineFramer(64 * 1024)
    chunk = b"y" * 8
    for _ in range(60 * 1024 // 8):
        assert f.feed(chunk) == []
    assert f.partial == 60 * 1024
    assert f.feed(b"\n") == [b"y" * (60 * 1024)]
    assert f.partial == 0
