"""Trigger rules: parsing, matching, rates, exemptions."""

from __future__ import annotations

import pytest

from supervisor.monitors import events as ev
from supervisor.triggers import TriggerEngine, TriggerError, load_triggers, parse_triggers


def engine(text: str, tags=None, clock=None):
    fired = []
    kw = {"clock": clock} if clock else {}
    e = TriggerEngine(parse_triggers(text, "t.toml"), tags or {}, fired.append, **kw)
    return e, fired


def test_the_default_triggers_load():
    names = {t.name for t in load_triggers(None)}
    assert {
        "persistence-write",
        "fileless-exec",
        "dropped-and-executed",
        "lan-connect",
        "metadata-connect",
        "ptrace",
        "setuid-attempt",
        "module-load",
        "bpf",
        "mount",
        "firewall-drop",
        "event-flood",
        "shell-or-network-tool",
    } <= names


def test_glob_on_a_path_and_bool_fields():
    e, fired = engine(
        '[[trigger]]\nname = "ssh"\nkind = "open"\nseverity = "high"\n'
        '[trigger.match]\nwrite = true\npath = { glob = ["*/.ssh/*"] }\n'
    )
    e.on_event(
        ev.Open(
            result=0,
            ts=1,
            workload="w",
            path="/home/w/.ssh/authorized_keys",
            flags=1,
            write=True,
            create=True,
        )
    )
    e.on_event(
        ev.Open(
            result=0,
            ts=1,
            workload="w",
            path="/home/w/.ssh/known_hosts",
            flags=0,
            write=False,
            create=False,
        )
    )
    e.on_event(
        ev.Open(
            result=0, ts=1, workload="w", path="/home/w/notes", flags=1, write=True, create=False
        )
    )
    assert [a.event.path for a in fired] == ["/home/w/.ssh/authorized_keys"]
    assert fired[0].severity == "high" and fired[0].responses == ["alert"]


def test_cidr_and_lists():
    e, fired = engine(
        '[[trigger]]\nname = "lan"\nkind = "connect"\n'
        '[trigger.match]\naddr = { cidr = ["10.0.0.0/8", "fd00::/8"] }\n'
        "port = [22, 80]\n"
    )
    for addr, port in (("10.1.2.3", 22), ("10.1.2.3", 443), ("8.8.8.8", 22), ("fd00::1", 80)):
        e.on_event(ev.Connect(result=0, ts=1, family="inet", addr=addr, port=port))
    assert [(a.event.addr, a.event.port) for a in fired] == [("10.1.2.3", 22), ("fd00::1", 80)]


def test_a_list_field_matches_when_any_element_does():
    e, fired = engine(
        '[[trigger]]\nname = "rm"\nkind = "exec"\n[trigger.match]\nargv = { regex = "-rf?" }\n'
    )
    e.on_event(ev.Exec(result=0, ts=1, filename="/bin/rm", argv=["rm", "-rf", "/"]))
    e.on_event(ev.Exec(result=0, ts=1, filename="/bin/ls", argv=["ls", "-l"]))
    assert len(fired) == 1


def test_rate_fires_when_count_falls_within_the_window():
    now = [0.0]
    e, fired = engine(
        '[[trigger]]\nname = "burst"\nkind = "connect"\n[trigger.rate]\ncount = 3\nwindow = 10\n',
        clock=lambda: now[0],
    )
    for t in (0, 1, 20, 21, 22):
        now[0] = t
        e.on_event(ev.Connect(result=0, ts=t, workload="w", family="inet"))
    assert len(fired) == 1  # 20, 21, 22; the first two fell out of the window


def test_except_tags_exempt_a_workload():
    e, fired = engine(
        '[[trigger]]\nname = "sh"\nkind = "exec"\nexcept_tags = ["uses-shell"]\n'
        '[trigger.match]\nfilename = { glob = "*/sh" }\n',
        tags={"dev": frozenset({"uses-shell"}), "prod": frozenset()},
    )
    for w in ("dev", "prod"):
        e.on_event(ev.Exec(result=0, ts=1, workload=w, filename="/bin/sh"))
    assert [a.event.workload for a in fired] == ["prod"]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[[trigger]]\nname = "x"\nkind = "teleport"\n', "unknown event kinds"),
        ('[[trigger]]\nname = "x"\nkind = "exec"\n[trigger.match]\ncolour = "red"\n', "no field"),
        ('[[trigger]]\nname = "x"\nkind = "exec"\nresponses = ["nuke"]\n', "nuke"),
        (
            '[[trigger]]\nname = "x"\nkind = "exec"\n[trigger.match]\nfilename = { regex = "(" }\n',
            "bad regex",
        ),
        ('[[trigger]]\nname = "Bad Name"\nkind = "exec"\n', "name"),
    ],
)
def test_bad_trigger_files_are_errors(text, fragment):
    with pytest.raises(TriggerError, match=fragment):
        parse_triggers(text, "t.toml")


def test_pyinotify_imports_without_asyncore():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['asyncore'] = None\n"
        "from supervisor.monitors.inotify_compat import load_pyinotify\n"
        "p = load_pyinotify(); print(p.AsyncioNotifier.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "AsyncioNotifier", out.stderr


def test_a_failed_syscall_matches_only_a_trigger_that_asks_for_failures():
    text = (
        '[[trigger]]\nname = "ran"\nkind = "exec"\n[trigger.match]\nfilename = "/bin/sh"\n'
        '[[trigger]]\nname = "tried"\nkind = "exec"\noutcome = "failure"\n'
        '[trigger.match]\nfilename = "/bin/sh"\n'
        '[[trigger]]\nname = "either"\nkind = "exec"\noutcome = "any"\n'
        '[trigger.match]\nfilename = "/bin/sh"\n'
    )
    e, fired = engine(text)
    e.on_event(ev.Exec(result=-2, error="ENOENT", ts=1, workload="w", filename="/bin/sh"))
    assert [a.trigger for a in fired] == ["tried", "either"]
    fired.clear()
    e.on_event(ev.Exec(result=0, ts=1, workload="w", filename="/bin/sh"))
    assert [a.trigger for a in fired] == ["ran", "either"]


def test_unless_keeps_a_trigger_from_firing_on_what_it_names():
    e, fired = engine(
        '[[trigger]]\nname = "lan"\nkind = "connect"\n'
        '[trigger.match]\naddr = { cidr = ["10.0.0.0/8"] }\n'
        '[trigger.unless]\nservice = { glob = "*" }\n'
    )
    e.on_event(ev.Connect(result=0, ts=1, family="inet", addr="10.0.0.53", service="dns"))
    e.on_event(ev.Connect(result=0, ts=1, family="inet", addr="10.0.0.9"))
    assert [a.event.addr for a in fired] == ["10.0.0.9"]


def test_an_exemption_in_another_file_narrows_a_default_trigger(tmp_path):
    d = tmp_path / "triggers.d"
    d.mkdir()
    (d / "50-builder.toml").write_text(
        '[[exempt]]\ntrigger = "shell-or-network-tool"\nworkloads = ["builder"]\n'
        '[exempt.match]\nfilename = "/usr/bin/ssh"\n'
    )
    triggers = load_triggers(d)
    fired = []
    e = TriggerEngine(triggers, {}, fired.append)
    for workload, filename in [
        ("builder", "/usr/bin/ssh"),
        ("builder", "/usr/bin/curl"),
        ("other", "/usr/bin/ssh"),
    ]:
        e.on_event(ev.Exec(result=0, ts=1, workload=workload, filename=filename))
    got = [
        (a.event.workload, a.event.filename) for a in fired if a.trigger == "shell-or-network-tool"
    ]
    assert got == [("builder", "/usr/bin/curl"), ("other", "/usr/bin/ssh")]


def test_an_exemption_for_a_trigger_that_does_not_exist_is_an_error(tmp_path):
    d = tmp_path / "triggers.d"
    d.mkdir()
    (d / "50-x.toml").write_text('[[exempt]]\ntrigger = "no-such"\n')
    with pytest.raises(TriggerError, match="no trigger named 'no-such'"):
        load_triggers(d)


def test_a_setuid_drop_is_not_an_alert_and_a_gain_is():
    triggers = [t for t in load_triggers(None) if t.name == "setuid-attempt"]
    fired = []
    e = TriggerEngine(triggers, {}, fired.append)
    e.on_event(ev.Setid(result=0, ts=1, workload="w", call="setresuid", ids=[1000], gain=False))
    e.on_event(ev.Setid(result=-1, ts=1, workload="w", call="setuid", ids=[0], gain=True))
    assert [a.event.ids for a in fired] == [[0]]


OOM_WRAPPER = 'echo 1000 > /proc/self/oom_score_adj; exec "$0" "$@"'


def default_engine():
    fired = []
    return TriggerEngine(load_triggers(None), {}, fired.append), fired


def test_openclaws_oom_wrapper_starting_an_mcp_server_raises_no_alert():
    e, fired = default_engine()
    argv = ["/bin/sh", "-c", OOM_WRAPPER, "clawvisor", "mcp"]
    e.on_event(ev.Exec(result=0, ts=1, filename="/bin/sh", argv=argv, caller="/usr/bin/node"))
    assert fired == []


def test_a_shell_carrying_the_wrapper_text_as_a_later_argument_still_alerts():
    e, fired = default_engine()
    argv = ["/bin/sh", "evil.sh", "-c", OOM_WRAPPER]
    e.on_event(ev.Exec(result=0, ts=1, filename="/bin/sh", argv=argv, caller="/usr/bin/node"))
    assert {f.trigger for f in fired} >= {"shell-or-network-tool"}


def test_what_the_wrapper_execs_is_judged_on_its_own():
    e, fired = default_engine()
    e.on_event(ev.Exec(result=0, ts=1, filename="/bin/bash", argv=["bash"], caller="/bin/sh"))
    assert "shell-or-network-tool" in {f.trigger for f in fired}


def test_starts_takes_only_a_non_empty_list_of_strings():
    with pytest.raises(TriggerError):
        parse_triggers(
            '[[trigger]]\nname = "x"\nkind = "exec"\n[trigger.match]\nargv = { starts = [] }\n',
            "t.toml",
        )
