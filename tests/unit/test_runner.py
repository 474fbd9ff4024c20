"""argv templates: placeholders fill whole elements; nothing is ever re-split."""

import asyncio

import pytest

from executors.runner import TemplateError, render_argv, run_argv, template_fields


def test_placeholder_fills_one_element_whatever_it_contains():
    value = "a b; rm -rf / $(id) `x` | y"
    assert render_argv(["opener", "--", "{url}"], {"url": value}) == ["opener", "--", value]


def test_placeholder_inside_an_element_stays_inside_it():
    assert render_argv(["--url={url}"], {"url": "x y"}) == ["--url=x y"]


def test_doubled_braces_are_literal():
    assert render_argv(["{{url}}", "{url}"], {"url": "u"}) == ["{url}", "u"]


def test_unknown_placeholder_is_an_error():
    with pytest.raises(TemplateError):
        render_argv(["{nope}"], {"url": "u"})


def test_template_fields_lists_names_and_rejects_stray_braces():
    assert template_fields(["x", "{url}", "--q={query}"]) == {"url", "query"}
    with pytest.raises(TemplateError):
        template_fields(["{url"])


def test_run_argv_caps_output_and_marks_truncation():
    out = asyncio.run(
        run_argv(
            ["/usr/bin/head", "-c", "200000", "/dev/zero"], user=None, timeout=10, output_cap=1024
        )
    )
    assert out.exit_status == 0
    assert out.truncated
    assert out.stdout.startswith(b"\0" * 1024) and out.stdout.endswith(b"truncated]\n")


def test_run_argv_kills_the_process_group_on_timeout():
    out = asyncio.run(run_argv(["/usr/bin/sleep", "30"], user=None, timeout=0.3))
    assert out.timed_out
    assert out.exit_status < 0


def test_run_argv_gives_a_clean_environment():
    out = asyncio.run(run_argv(["/usr/bin/env"], user=None, timeout=10))
    names = {line.split(b"=", 1)[0] for line in out.stdout.splitlines()}
    assert names == {b"PATH", b"HOME", b"USER", b"LOGNAME", b"LANG"}
