"""The kept log writes events and alert lines in the order they were handed over, each
event one JSON line, also when runs of events are encoded in one call."""

from __future__ import annotations

import json
from pathlib import Path

from supervisor.monitors import eventlog
from supervisor.monitors import events as ev


def opened(i: int) -> ev.Open:
    return ev.Open(ts=float(i), workload="w", result=3, path=f"/tmp/{i}", flags=1,
                   write=True, create=False)  # fmt: skip


def test_events_and_alert_lines_keep_their_order(tmp_path: Path):
    log = eventlog.EventLog(tmp_path)
    want: list[dict[str, object]] = []
    for i in range(10):
        log.append(opened(i))
        want.append({"path": f"/tmp/{i}"})
        if i % 3 == 0:
            log.append(json.dumps({"ts": float(i), "alert": i}).encode() + b"\n")
            want.append({"alert": i})
    log.flush()
    lines = [
        json.loads(x) for s in eventlog.segments(tmp_path) for x in s.read_bytes().splitlines()
    ]
    assert [{k: v for k, v in x.items() if k in ("alert", "path")} for x in lines] == want
    assert log.written == len(want)


def test_a_chunk_of_only_events_is_one_line_each(tmp_path: Path):
    log = eventlog.EventLog(tmp_path)
    for i in range(5000):  # more than one chunk
        log.append(opened(i))
    log.flush()
    lines = [x for s in eventlog.segments(tmp_path) for x in s.read_bytes().splitlines()]
    assert [json.loads(x)["path"] for x in lines] == [f"/tmp/{i}" for i in range(5000)]
