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


def test_the_systemd_run_launcher_keeps_argv_user_env_and_limits():
    from executors.base import Account
    from executors.runner import Limits, _as_transient_unit

    user = Account(workload="w", user="wl-w", uid=2001, gid=2001, groups=(2001, 990), home="/h")
    argv = _as_transient_unit(
        ["getent", "ahosts", "a b;c"],
        "clawvisor-exec-x.service",
        user=user,
        env={"PATH": "/usr/bin", "LANG": "C.UTF-8"},
        cwd="/h",
        limits=Limits(nproc=10, fsize=20, nofile=30),
        timeout=7,
    )
    assert argv[-4:] == ["--", "getent", "ahosts", "a b;c"]  # still one element each
    head = argv[: argv.index("--")]
    for expected in (
        "--uid=2001",
        "--gid=2001",
        "--property=SupplementaryGroups=2001 990",
        "--property=NoNewPrivileges=yes",
        "--property=UMask=0077",
        "--property=LimitNPROC=10",
        "--property=LimitFSIZE=20",
        "--property=LimitNOFILE=30",
        "--property=RuntimeMaxSec=12",
        "--working-directory=/h",
        "--setenv=PATH=/usr/bin",
        "--setenv=LANG=C.UTF-8",
        "--unit=clawvisor-exec-x.service",
        "--wait",
        "--pipe",
    ):
        assert expected in head


def test_auto_launcher_is_direct_outside_a_systemd_service(monkeypatch):
    from supervisor.config import resolve_launcher

    monkeypatch.delenv("INVOCATION_ID", raising=False)
    assert resolve_launcher("auto") == "direct"
    assert resolve_launcher("systemd-run") == "systemd-run"
