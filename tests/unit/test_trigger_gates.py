"""The trigger engine's gates: one regex per event field (behind a cheaper literal test)
and one comparison per exact value rule out the triggers that cannot match, and never
change which alerts an event raises."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from supervisor.monitors import events as ev
from supervisor.trigger_gates import GATE_MEMO
from supervisor.triggers import TriggerEngine, load_triggers

PATHS = [
    "/home/w/work/a.txt",
    "/home/w/.bashrc",
    "/home/w/.ssh/authorized_keys",
    "/etc/shadow",
    "/var/log/auth.log",
    "/proc/sys/kernel/core_pattern",
    "/home/w/.bash_history",
    "/tmp/x",
    "/proc/1/mem",
]


def fired_names(engine: TriggerEngine, event: ev.Event) -> list[str]:
    out: list[str] = []
    engine.fire = lambda alert: out.append(alert.trigger)
    engine.on_event(event)
    return out


def ungated(engine: TriggerEngine, event: ev.Event) -> list[str]:
    """What the same triggers fire checked one by one, with no gate (the reference)."""
    kind = event.__struct_config__.tag
    tags = engine.tags.get(event.workload or "", frozenset())
    return [
        t.name
        for t in engine.by_kind.get(kind, [])  # type: ignore[arg-type]
        if not (t.except_tags & tags) and t.matches(event) and not t.exempt(event, tags)  # type: ignore[arg-type]
    ]


#: Who did it, in every random event below.
WHO: dict[str, Any] = {"ts": 0.0, "workload": "w", "uid": 1000, "pid": 1, "comm": "sh"}


def same_as_ungated(make: Callable[[random.Random], ev.Event], seed: int) -> None:
    """3000 random events fire exactly what the triggers checked one by one fire, and
    enough of them fire something for that to say anything."""
    engine = TriggerEngine(load_triggers(None), {"w": frozenset()}, lambda a: None)
    rng = random.Random(seed)
    checked = 0
    for _ in range(3000):
        event = make(rng)
        assert fired_names(engine, event) == ungated(engine, event), event
        checked += bool(ungated(engine, event))
    assert checked > 100  # the sample really fired triggers, not only ruled them out


def test_gated_alerts_are_exactly_the_ungated_ones_for_many_opens():
    same_as_ungated(
        lambda rng: ev.Open(
            **WHO,
            result=rng.choice([3, -13]),
            error=None,
            path=rng.choice(PATHS) + rng.choice(["", "x", "/y"]),
            flags=0,
            write=rng.random() < 0.5,
            create=rng.random() < 0.5,
            truncate=rng.random() < 0.3,
            other_home=rng.choice([None, "/home/v"]),
            resolved=rng.random() < 0.9,
        ),
        seed=7,
    )


def test_a_benign_open_is_ruled_out_by_the_gate_without_checking_each_trigger():
    engine = TriggerEngine(load_triggers(None), {"w": frozenset()}, lambda a: None)
    gates = engine._gated[ev.Open].patterns
    event = ev.Open(
        ts=0.0, workload="w", uid=1, pid=1, comm="cc", result=3, path="/home/w/work/a.o",
        flags=0, write=True, create=True,
    )  # fmt: skip
    [(cheap, union)] = [(g.cheap, g.union) for g in gates if g.field == "path"]
    assert not cheap.admits(event.path)
    assert union.fullmatch(event.path) is None
    assert fired_names(engine, event) == []


def test_a_trigger_with_only_exact_matches_sits_behind_the_rarest_value():
    engine = TriggerEngine(load_triggers(None), {"w": frozenset()}, lambda a: None)
    gated = engine._gated[ev.Open]
    exact_gates, entries = gated.exacts, gated.entries
    [bit] = [b for t, b in entries if t.name == "unresolved-path-write"]
    # `resolved` defaults to true: asking for false rules out nearly every open.
    assert bit is not None and ("resolved", False) in exact_gates


def test_a_resolved_write_opens_no_candidate_and_an_unresolved_one_fires():
    engine = TriggerEngine(load_triggers(None), {"w": frozenset()}, lambda a: None)
    common = {"ts": 0.0, "workload": "w", "uid": 1, "pid": 1, "comm": "cc", "result": 3}
    resolved = ev.Open(path="/dev/null", flags=1, write=True, create=False, **common)
    unresolved = ev.Open(
        path="<fd 9>/x", flags=1, write=True, create=False, resolved=False, **common
    )
    assert fired_names(engine, resolved) == []
    assert engine._gated[ev.Open].candidates(resolved) == []
    assert fired_names(engine, unresolved) == ["unresolved-path-write"]


def test_gated_alerts_are_exactly_the_ungated_ones_for_many_execs():
    programs = ["/usr/bin/nc", "/bin/sh", "/tmp/x/linpeas.sh", "/usr/bin/useradd", "/bin/ls"]
    same_as_ungated(
        lambda rng: ev.Exec(
            **WHO,
            result=rng.choice([0, -2]),
            filename=rng.choice(programs),
            argv=rng.choice([[], ["sh", "-c", "x"], ["find", "/", "-name", "id_rsa"]]),
            caller=rng.choice([None, "/usr/bin/python3", "/bin/bash"]),
            env=rng.choice([[], ["LD_PRELOAD=/tmp/x.so"], ["HISTFILE=/dev/null"]]),
            dropped=rng.random() < 0.3,
            dropped_by=rng.choice([None, "curl[5] write"]),
            temp=rng.random() < 0.3,
            memfd=rng.random() < 0.1,
        ),
        seed=11,
    )


def test_a_gates_remembered_answers_stay_bounded_under_unique_paths():
    engine = TriggerEngine(load_triggers(None), {"w": frozenset()}, lambda a: None)
    common = {"ts": 0.0, "workload": "w", "uid": 1, "pid": 1, "comm": "cc", "result": 3}
    for i in range(GATE_MEMO + 500):
        engine.on_event(ev.Open(path=f"/tmp/f{i}", flags=1, write=True, create=False, **common))
    [seen] = [g.seen for g in engine._gated[ev.Open].patterns if g.field == "path"]
    assert 0 < len(seen) <= GATE_MEMO
    # Still right after the table was emptied and filled again.
    hit = ev.Open(path="/home/w/.bashrc", flags=1, write=True, create=False, **common)
    assert "persistence-write" in fired_names(engine, hit)
