"""The corpora (tests/data/): attack behaviours as a workload user, with the alerts each
raised (reported, and the expected ones required), and benign work that must raise no
high or critical alert. The report goes to bench/results/corpora.json for results.md.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from supervisor.cgroups import pids_of
from tests.helpers import rig
from tests.helpers.rules import rule
from tests.helpers.stream import Stream

POLICY = rule("status")

DATA = Path(__file__).resolve().parents[1] / "data"
REPORT = rig.REPO / "bench" / "results" / "corpora.json"
SERVICE = "10.231.1.80"
GENERIC = {"shell-or-network-tool"}
HIGH = {"high", "critical"}


def load(name: str) -> list[dict]:
    return tomllib.loads((DATA / name).read_text())["behaviour"]


@pytest.fixture(scope="module")
def corpus_mon(make_user, make_daemon):
    token = secrets.token_hex(2)
    name, other = f"c{token}", f"o{token}"
    root = rig.shared_tmpdir("clawvisor-corpus-")
    homes = root / "home"
    w, o = make_user(home=str(homes / name)), make_user(home=str(homes / other))
    for user, home in ((w, homes / name), (o, homes / other)):
        home.mkdir(parents=True)
        os.chown(home, user.uid, user.gid)
    (homes / other / ".aws").mkdir()
    (homes / other / ".aws" / "credentials").write_text("x\n")
    (homes / other).chmod(0o700)
    settings = (
        f'[server]\nsocket_group = "cvt-no-such-group"\n[provision]\nhome_root = "{homes}"\n'
        "[monitors]\noverlay = false\ncounters = false\n"
    )
    daemon = make_daemon(
        {name: w, other: o},
        {"10.toml": POLICY},
        settings,
        workload_extra={name: f'host_services = ["{SERVICE}:11434"]'},
    )
    stream = Stream(daemon.control)
    yield w, homes / name, other, stream
    stream.sock.close()
    for uid in (w.uid, o.uid):
        for pid in pids_of(uid):
            os.kill(pid, signal.SIGKILL)
    rig.cleanup_root(root)


def run(user, home: Path, script: str, other: str) -> int:
    script = script.replace("OTHER", other).replace("SERVICE", SERVICE)
    proc = subprocess.Popen(
        ["/bin/bash", "-c", script],
        cwd=str(home),
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(home), "LANG": "C.UTF-8"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **rig.as_user(user),
    )
    proc.wait(120)
    return proc.pid


def settle(stream: Stream, quiet: float = 0.25, most: float = 2.0) -> None:
    """Until nothing new has arrived for `quiet` seconds (at most `most`): the alerts
    for a behaviour's last events come with or just after them."""
    deadline = time.monotonic() + most
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        with stream.lock:
            n = len(stream.items)
        if n != seen:
            seen, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.02)


def alerts_of(stream: Stream, root_pid: int) -> list[dict]:
    """Alerts raised by a process and its descendants (by lineage in the events)."""
    stream.find(lambda i: i["kind"] == "exit" and i.get("pid") == root_pid, timeout=20)
    settle(stream)  # alerts after the last events
    with stream.lock:
        items = list(stream.items)
    tree = {root_pid}
    for i in items:
        if i["kind"] == "fork" and i.get("pid") in tree:
            tree.add(i["child"])
    return [i for i in items if i.get("alert") and i.get("pid") in tree]


def now() -> str:
    """When the report was measured (results.md says it; a checkout's file times do not)."""
    return f"{datetime.now(UTC):%Y-%m-%d %H:%M}"


def test_the_attack_corpus_is_caught(corpus_mon):
    user, home, other, stream = corpus_mon
    behaviours = load("attack_corpus.toml")
    assert len(behaviours) >= 60
    report = []
    for b in behaviours:
        expected = set(b.get("expect", []))
        pid = run(user, home, b["script"], other)
        names = sorted({a["alert"] for a in alerts_of(stream, pid)})
        # Once more when the expected alert is missing: a process that exits at once can
        # take its cwd with it before the daemon reads it (a relative path then stays
        # unresolved). The report says when a second run was needed.
        retried = bool(expected) and not expected & set(names)
        if retried:
            pid = run(user, home, b["script"], other)
            names = sorted({a["alert"] for a in alerts_of(stream, pid)})
        specific = sorted(set(names) - GENERIC)
        report.append(
            {
                "name": b["name"],
                "tactic": b["tactic"],
                "alerts": names,
                "caught": "specific" if specific else ("generic" if names else "missed"),
                "expected_seen": bool(expected & set(names)) if expected else None,
                "retried": retried,
            }
        )
    REPORT.parent.mkdir(exist_ok=True)
    old = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    REPORT.write_text(json.dumps({**old, "attack": report, "measured": now()}, indent=1) + "\n")
    for r in report:
        print(f"{r['caught']:9} {r['name']}: {', '.join(r['alerts']) or '-'}")
    missing = [r["name"] for r in report if r["expected_seen"] is False]
    assert missing == []


def test_the_benign_corpus_raises_no_high_or_critical_alert(corpus_mon):
    user, home, other, stream = corpus_mon
    report = []
    for b in load("benign_corpus.toml"):
        pid = run(user, home, b["script"], other)
        alerts = alerts_of(stream, pid)
        report.append(
            {
                "name": b["name"],
                "alerts": sorted({f"{a['alert']} ({a['severity']})" for a in alerts}),
                "high": sorted({a["alert"] for a in alerts if a["severity"] in HIGH}),
            }
        )
    old = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps({**old, "benign": report, "measured": now()}, indent=1) + "\n")
    for r in report:
        print(f"{r['name']}: {', '.join(r['alerts']) or '-'}")
    assert [(r["name"], r["high"]) for r in report if r["high"]] == []
