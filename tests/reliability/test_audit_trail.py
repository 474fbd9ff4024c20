"""Tamper evidence and the trail as people and SIEMs read it: `clawvisor audit log|verify`."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from tests.helpers import rig
from tests.helpers.hide_dir import hiding_journald
from tests.helpers.rig import call
from tests.helpers.rules import rule

# A workload name of this run only: other runs' records (the load rows write a million
# for their workload) must not be in what `audit log --workload` reads.
W = f"w{uuid.uuid4().hex[:8]}"
POLICY = rule("status")


def cli(*argv: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(rig.CLAWVISOR), "audit", *argv], capture_output=True, text=True, check=False, **kw
    )


@pytest.fixture(scope="module")
def daemon(make_user, make_daemon, journal):
    user = make_user()
    d = make_daemon({W: user, "v": make_user()}, {"10.toml": POLICY})
    return d, user


@pytest.mark.reliability("audit", "audit log --format cef: one line per record")
def test_audit_log_shows_a_workloads_records_as_cef(daemon, journal):
    d, user = daemon
    ids = [f"cef-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for rid in ids:
        call(d.intents, user, {"action": "status"}, rid)
    journal.wait_entries(1, CLAWVISOR_INTENT_ID=ids[-1])
    out = cli(
        "log",
        "--workload",
        W,
        "--since",
        "5m",
        "--format",
        "cef",
        "--log-dir",
        str(d.root / "log"),
        "--state-dir",
        str(d.root / "state"),
    ).stdout.splitlines()
    mine = [ln for ln in out if any(f"externalId={rid}" in ln for rid in ids)]
    assert len(mine) == 3 and all(ln.startswith("CEF:0|clawvisor|clawvisor|") for ln in mine)
    assert all("|decision|" not in ln and f"suser={W} " in ln for ln in mine)
    assert all(ln.split("|")[6] == "1" for ln in mine)  # info -> 1


@pytest.mark.reliability("audit", "audit log --follow shows new records")
def test_audit_log_follow_prints_records_as_they_are_written(daemon, journal):
    d, user = daemon
    proc = subprocess.Popen(
        [
            str(rig.CLAWVISOR),
            "audit",
            "log",
            "--follow",
            "--format",
            "json",
            "--log-dir",
            str(d.root / "log"),
            "--state-dir",
            str(d.root / "state"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        rid = f"follow-{uuid.uuid4().hex[:8]}"
        call(d.intents, user, {"action": "status"}, rid)
        deadline = time.monotonic() + 15
        seen = None
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line and json.loads(line).get("intent_id") == rid:
                seen = json.loads(line)
                break
        assert seen is not None and seen["workload"] == W and seen["seq"] > 0
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.reliability("audit", "audit verify finds an edited record and names the first break")
def test_an_edited_fallback_record_is_found_by_verify(make_user, make_daemon):
    user = make_user()
    d = make_daemon({"w": user}, {"10.toml": POLICY}, wrapper=hiding_journald())
    for i in range(6):
        call(d.intents, user, {"action": "status"}, f"t{i}")
    d.stop()
    args = ["verify", "--state-dir", str(d.root / "state"), "--log-dir", str(d.root / "log")]
    assert cli(*args).returncode == 0
    lines = d.fallback.read_text().splitlines()
    rec = json.loads(lines[4])
    rec["record"]["message"] = rec["record"]["message"].replace("allow", "deny")
    lines[4] = json.dumps(rec)
    d.fallback.write_text("\n".join(lines) + "\n")
    proc = cli(*args)
    assert proc.returncode == 1
    assert f"first break: seq {rec['record']['seq']}" in proc.stdout
