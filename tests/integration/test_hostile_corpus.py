"""Every string-taking executor against the hostile corpus, through the real socket.

Each value must be refused, or arrive as exactly one inert argv element; the canary file
that any injected command would create must never appear.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers import rig
from tests.helpers.rig import connect_as, read_lines
from tests.helpers.rules import rule

DATA = Path(__file__).resolve().parents[1] / "data" / "hostile.jsonl"
HELPERS = Path(__file__).resolve().parents[1] / "helpers"
PY = "/usr/bin/python3"
ALLOW = rule("*", "alpha")
REFUSED = {"invalid_params", "executor_failed", "bad_frame", "bad_request", "rate_limited"}
OPS_RECORDER = """#!/usr/bin/python3 -S
import json, sys
with open({out!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def corpus(canary: str) -> list[str]:
    return [
        json.loads(line).replace("{CANARY}", canary)
        for line in DATA.read_text().splitlines()
        if line.strip()
    ]


@pytest.fixture(scope="module")
def hostile(make_user, make_daemon):
    root = rig.shared_tmpdir("clawvisor-hostile-")
    rec = root / "rec"
    rec.mkdir(mode=0o1777)
    rec.chmod(0o1777)
    home = root / "home"
    alpha = make_user(home=str(home))
    home.mkdir()
    os.chown(home, alpha.uid, alpha.gid)
    (home / "ops").mkdir(mode=0o700)
    script = home / "ops" / "echo-args"
    script.write_text(OPS_RECORDER.format(out=str(rec / "ops.jsonl")))
    script.chmod(0o755)
    (root / "dns.json").write_text("{}")
    canary = f"/tmp/clawvisor-canary-{uuid.uuid4().hex}"

    def recorder(name: str, *template: str) -> str:
        return json.dumps([PY, "-S", str(HELPERS / "recorder.py"), str(rec / name), *template])

    settings = f"""
[server]
socket_group = "cvt-no-such-group"
max_inflight = 64
[executors.open-url]
argv = {recorder("open.jsonl", "{url}")}
[executors.search]
argv = {recorder("search.jsonl", "{url}")}
url_template = "https://search.example/?q={{query}}"
[executors.install-app]
argv = {recorder("apt.jsonl", "install", "-y", "--", "{package}")}
[executors.egress-allow]
argv = {
        json.dumps(
            [
                PY,
                "-S",
                str(HELPERS / "resolver_stub.py"),
                str(root / "dns.json"),
                str(rec / "dns.jsonl"),
                "{host}",
            ]
        )
    }
[executors.workload-start]
argv = {recorder("unit.jsonl", "start", "clawvisor-workload@{target}.service")}
[executors.notify]
rate = "100000/min"
"""

    def prepare(daemon_root: Path) -> None:
        upper = daemon_root / "state" / "overlay" / "alpha" / "upper"
        upper.mkdir(parents=True)
        (upper / "docs").mkdir()
        (upper / "docs" / "link-out").symlink_to("/etc/passwd")
        (upper / "link-to-etc").symlink_to("/etc")
        (daemon_root / "dest").mkdir()
        wl = daemon_root / "etc" / "workloads.toml"
        wl.write_text(wl.read_text().replace("__DEST__", str(daemon_root / "dest")))

    daemon = make_daemon(
        {"alpha": alpha},
        {"10.toml": ALLOW},
        settings,
        prepare=prepare,
        workload_extra={"alpha": 'overlay = { lower = "/srv" }\ndestination = "__DEST__"'},
    )
    yield daemon, alpha, rec, canary
    shutil.rmtree(root, ignore_errors=True)
    assert not os.path.exists(canary)


TARGETS = [
    ("open-url", lambda v: {"url": v}, "open.jsonl"),
    ("search", lambda v: {"query": v}, "search.jsonl"),
    ("install-app", lambda v: {"package": v}, "apt.jsonl"),
    ("egress-allow", lambda v: {"host": v}, "dns.jsonl"),
    ("sync-out", lambda v: {"paths": [v]}, None),
    ("notify", lambda v: {"message": v}, None),
    ("run-ops", lambda v: {"script": v}, None),
    ("run-ops", lambda v: {"script": "echo-args", "args": [v]}, "ops.jsonl"),
    ("workload-start", lambda v: {"target": v}, "unit.jsonl"),
]


def test_the_corpus_is_big_enough():
    assert len(corpus("/tmp/x")) >= 300


@pytest.mark.parametrize(
    "action, shape, record", TARGETS, ids=[f"{a}-{i}" for i, (a, _, _) in enumerate(TARGETS)]
)
@pytest.mark.reliability("isolation", "hostile params reach executors as one inert argument")
def test_every_value_is_refused_or_one_inert_argument(hostile, action, shape, record):
    daemon, alpha, rec, canary = hostile
    values = corpus(canary)
    lines = {
        f"h{i}": json.dumps({"id": f"h{i}", "intent": {"action": action, **shape(v)}}).encode()
        + b"\n"
        for i, v in enumerate(values)
    }
    fits = {k: ln for k, ln in lines.items() if len(ln) <= 64 * 1024}
    replies: dict[str, dict] = {}
    with connect_as(daemon.intents, alpha, timeout=120) as sock:
        sock.sendall(b"".join(fits.values()))
        replies.update((r["id"], r) for r in read_lines(sock, len(fits), timeout=300))
    for k, ln in lines.items():
        if k not in fits:  # over the frame cap: refused, and that connection is closed
            with connect_as(daemon.intents, alpha) as sock:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(ln)
                [replies[k]] = read_lines(sock, 1)
    assert len(replies) == len(values)
    recorded = []
    if record and (rec / record).exists():
        for ln in (rec / record).read_text().splitlines():
            r = json.loads(ln)
            recorded.append(
                r["args"]
                if isinstance(r, dict) and "args" in r
                else r.get("argv")
                if isinstance(r, dict)
                else r
            )
    accepted = 0
    for i, v in enumerate(values):
        r = replies[f"h{i}"]
        if r["status"] != "ok":
            assert r["error"]["code"] in REFUSED, (v, r)
            continue
        accepted += 1
        if action == "open-url":
            assert [r["result"]["url"]] in recorded
        elif action == "search":
            url = r["result"]["url"]
            assert [url] in recorded
            assert parse_qs(urlsplit(url).query)["q"] == [v]  # the query, whole, encoded
        elif action == "install-app":
            assert ["install", "-y", "--", v] in recorded
        elif action == "run-ops":
            assert [v] in recorded
        elif action == "workload-start":
            assert ["start", f"clawvisor-workload@{v}.service"] in recorded
        elif action == "notify":
            assert r["result"]["delivered"] == 0
        else:
            pytest.fail(f"{action} accepted {v!r}")
    assert not os.path.exists(canary)
    # Each executor refuses most of the corpus; what it accepts it passes on inertly.
    assert accepted < len(values)
