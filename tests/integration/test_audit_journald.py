"""Every decision reaches journald with its fields, or the JSONL fallback when journald is away."""

from __future__ import annotations

import json
import uuid

import pytest

from supervisor.audit import MESSAGE_IDS
from tests.helpers.hide_dir import hiding_journald
from tests.helpers.rig import call, connect_as, read_lines, request_line
from tests.helpers.rules import rule

POLICY = "\n" + rule("status") + rule("open-url", "*", "deny")


@pytest.fixture(scope="module")
def env(make_user, make_daemon, journal):
    user = make_user()
    return make_daemon({"audited": user}, {"10.toml": POLICY}), user


def test_allow_decision_is_in_journald_with_all_fields(env, journal):
    daemon, user = env
    rid = f"j-{uuid.uuid4().hex[:10]}"
    reply = call(daemon.intents, user, {"action": "status"}, rid)
    assert reply["status"] == "ok"
    [entry] = journal.wait_entries(1, CLAWVISOR_INTENT_ID=rid)
    assert entry["SYSLOG_IDENTIFIER"] == "clawvisor"
    assert entry["MESSAGE_ID"] == MESSAGE_IDS["decision"]
    assert entry["PRIORITY"] == "6"
    assert entry["CLAWVISOR_WORKLOAD"] == "audited"
    assert entry["CLAWVISOR_UID"] == str(user.uid)
    assert entry["CLAWVISOR_ACTION"] == "status"
    assert entry["CLAWVISOR_DECISION"] == "allow"
    assert entry["CLAWVISOR_RULE"] == "policy.d/10.toml:2"
    assert json.loads(entry["CLAWVISOR_PARAMS"]) == {}
    assert int(entry["CLAWVISOR_SEQ"]) > 0
    assert "CLAWVISOR_TARGET" not in entry  # no target was given
    assert "audited status" in entry["MESSAGE"]


def test_deny_decision_is_in_journald_with_target_params_and_rule(env, journal):
    daemon, user = env
    rid = f"j-{uuid.uuid4().hex[:10]}"
    reply = call(
        daemon.intents,
        user,
        {"action": "open-url", "target": "audited", "url": "https://deny.example/x"},
        rid,
    )
    assert reply["status"] == "denied"
    [entry] = journal.wait_entries(1, CLAWVISOR_INTENT_ID=rid)
    assert entry["PRIORITY"] == "5"
    assert entry["CLAWVISOR_DECISION"] == "deny"
    assert entry["CLAWVISOR_TARGET"] == "audited"
    assert entry["CLAWVISOR_RULE"] == "policy.d/10.toml:8"
    assert entry["CLAWVISOR_OUTCOME"] == "policy_denied"
    assert json.loads(entry["CLAWVISOR_PARAMS"]) == {"url": "https://deny.example/x"}


def test_rejected_input_is_audited_with_its_code(env, journal):
    daemon, user = env
    rid = f"j-{uuid.uuid4().hex[:10]}"
    reply = call(daemon.intents, user, {"action": "format-disk"}, rid)
    assert reply["error"]["code"] == "unknown_action"
    [entry] = journal.wait_entries(1, CLAWVISOR_INTENT_ID=rid)
    assert entry["MESSAGE_ID"] == MESSAGE_IDS["rejected"]
    assert entry["CLAWVISOR_OUTCOME"] == "unknown_action"
    assert entry["PRIORITY"] == "4"


def test_params_in_the_audit_are_bounded(env, journal):
    daemon, user = env
    rid = f"j-{uuid.uuid4().hex[:10]}"
    url = "https://long.example/" + "a" * 2000
    call(daemon.intents, user, {"action": "open-url", "url": url}, rid)
    [entry] = journal.wait_entries(1, CLAWVISOR_INTENT_ID=rid)
    assert len(entry["CLAWVISOR_PARAMS"]) <= 4096


def test_unreachable_journald_sends_every_record_to_the_fallback(make_user, make_daemon, journal):
    user = make_user()
    wrapper = hiding_journald()
    daemon = make_daemon({"w": user}, {"10.toml": POLICY}, wrapper=wrapper)
    ids = [f"fb-{uuid.uuid4().hex[:8]}-{i}" for i in range(60)]
    with connect_as(daemon.intents, user) as sock:
        for n, rid in enumerate(ids):
            if n % 3 == 0:
                intent: dict[str, object] = {"action": "status"}
            elif n % 3 == 1:
                intent = {"action": "open-url", "url": "https://e.org/"}
            else:
                intent = {"action": "no-such-action"}
            sock.sendall(request_line(rid, intent))
        replies = read_lines(sock, len(ids))
    assert len(replies) == len(ids)
    records = daemon.fallback_records()
    by_id = {r.get("intent_id") for r in records}
    assert set(ids) <= by_id
    per_request = [r for r in records if r.get("intent_id") in set(ids)]
    assert len(per_request) == len(ids)  # exactly one record per request, none lost
    assert "journald unreachable" in daemon.stderr()
    # None of these ever reached the host's journald.
    assert journal.entries(CLAWVISOR_INTENT_ID=ids[0]) == []
    seqs = [r["seq"] for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
