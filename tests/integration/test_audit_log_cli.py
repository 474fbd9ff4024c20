"""`clawvisor audit log` against a real daemon and a real (private) journald: each record
shown once though both sinks hold it, and the filters working together."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections import Counter

import pytest

from tests.helpers import rig
from tests.helpers.private_journald import PrivateJournald, status_through_an_outage

STATUS = '[[rule]]\naction = "status"\nsource = "*"\ntarget = "*"\ndecision = "allow"\n'


class Trail:
    def __init__(self, daemon: rig.Daemon, jd: PrivateJournald, ids: list[str]) -> None:
        self.daemon, self.jd, self.ids = daemon, jd, ids

    def log(self, *argv: str) -> list[dict]:
        out = subprocess.run(
            [
                str(rig.CLAWVISOR),
                "audit",
                "log",
                "--format",
                "json",
                "--journal-dir",
                str(self.jd.files),
                "--log-dir",
                str(self.daemon.root / "log"),
                "--state-dir",
                str(self.daemon.root / "state"),
                *argv,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return [json.loads(ln) for ln in out.stdout.splitlines() if ln.strip()]


def _key(rec: dict) -> tuple[str, str, int]:
    return (rec["chain"], rec.get("segment") or "", rec["seq"])


@pytest.fixture(scope="module")
def trail(make_user, make_daemon):
    """A daemon whose journald was killed and started again mid-run: the records journald
    had just taken are in the fallback file too (written there on the switch)."""
    user = make_user()
    with PrivateJournald() as jd:
        daemon = make_daemon({"w": user}, {"10.toml": STATUS}, wrapper=jd.client_wrapper())
        ids = [f"al-{uuid.uuid4().hex[:6]}-{i}" for i in range(60)]
        status_through_an_outage(jd, daemon.intents, user, ids, down=20, up=40)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            seen = {e.get("CLAWVISOR_INTENT_ID") for e in jd.entries("SYSLOG_IDENTIFIER=clawvisor")}
            if ids[-1] in seen:
                break
            time.sleep(0.2)
        yield Trail(daemon, jd, ids)
        daemon.stop()


def test_a_record_in_both_journald_and_the_fallback_is_shown_once(trail):
    in_fallback = {_key(r) for r in trail.daemon.fallback_records()}
    in_journal = {
        (e["CLAWVISOR_CHAIN"], e.get("CLAWVISOR_SEGMENT", ""), int(e["CLAWVISOR_SEQ"]))
        for e in trail.jd.entries("SYSLOG_IDENTIFIER=clawvisor")
    }
    assert in_fallback & in_journal, "the scenario must put some records in both sinks"
    shown = trail.log()
    counts = Counter(_key(r) for r in shown)
    assert counts and max(counts.values()) == 1, counts.most_common(3)
    assert set(counts) == in_fallback | in_journal  # and none is lost
    assert set(trail.ids) <= {r.get("intent_id") for r in shown}


def test_filters_by_intent_kind_and_workload_together(trail):
    rid = trail.ids[30]  # written while journald was away
    got = trail.log("--intent", rid, "--kind", "decision", "--workload", "w")
    assert got and {r["intent_id"] for r in got} == {rid}
    assert {r["kind"] for r in got} == {"decision"}
    assert trail.log("--intent", rid, "--workload", "someone-else") == []
    assert trail.log("--intent", rid, "--kind", "approval") == []
    both = trail.log("--kind", "decision", "--kind", "daemon")
    assert {r["kind"] for r in both} == {"decision", "daemon"}


def test_by_default_only_the_local_daemons_chain_is_shown(trail):
    chain = trail.daemon.chain
    assert {r["chain"] for r in trail.log() if r.get("chain")} == {chain}
    assert trail.log("--chain", "0" * 32) == []
    assert trail.log("--chain", chain, "--intent", trail.ids[0])
    assert trail.log("--chain", "all", "--intent", trail.ids[0])
