"""Hot reload: SIGHUP and `clawvisor reload`; broken policies never replace a good one."""

from __future__ import annotations

import shutil
import signal
import threading
import time
import uuid

import pytest

from tests.helpers import rig
from tests.helpers.rig import call, connect_as, read_lines, request_line
from tests.helpers.rules import policy_test, rule

ALLOW = rule("status")
DENY = "\n\n" + rule("status", "*", "deny")
BROKEN = '[[rule]]\naction = "status"\nsource = "*"\n  target = = "*"\n'


def write_policy(daemon, text, name="10.toml"):
    path = daemon.config_dir / "policy.d" / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.rename(path)  # a policy file is replaced whole, as an editor or deploy tool would


@pytest.fixture
def env(make_user, make_daemon):
    user = make_user()
    return make_daemon({"w": user}, {"10.toml": ALLOW}), user


def test_reload_command_swaps_the_policy(env):
    daemon, user = env
    assert call(daemon.intents, user, {"action": "status"})["decision"] == "allow"
    write_policy(daemon, DENY)
    out = rig.reload(daemon)
    assert out.returncode == 0, out.stderr
    assert "reloaded: 1 rules" in out.stdout
    reply = call(daemon.intents, user, {"action": "status"})
    assert (reply["decision"], reply["rule"]) == ("deny", "policy.d/10.toml:3")


def test_broken_policy_is_refused_loudly_and_the_old_one_stays(env, journal):
    daemon, user = env
    write_policy(daemon, BROKEN)
    out = rig.reload(daemon)
    assert out.returncode == 1
    assert "policy.d/10.toml:4:12:" in out.stderr and "previous policy stays" in out.stderr
    reply = call(daemon.intents, user, {"action": "status"})
    assert (reply["decision"], reply["rule"]) == ("allow", "policy.d/10.toml:1")
    crit = journal.wait_entries(
        1, SYSLOG_IDENTIFIER="clawvisor", PRIORITY="2", CLAWVISOR_RULE="policy.d/10.toml:4:12"
    )
    assert crit and "reload refused" in crit[-1]["MESSAGE"]


def test_sighup_reloads(env):
    daemon, user = env
    write_policy(daemon, DENY)
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while call(daemon.intents, user, {"action": "status"})["decision"] != "deny":
        assert time.monotonic() < deadline, "SIGHUP did not reload"
        time.sleep(0.05)


def test_failing_policy_tests_refuse_a_reload(env):
    daemon, user = env
    write_policy(daemon, policy_test("w", "status", "deny"), "90-tests.toml")
    out = rig.reload(daemon)
    assert out.returncode == 1 and "expected deny, got allow" in out.stderr
    assert call(daemon.intents, user, {"action": "status"})["decision"] == "allow"


def test_removed_workload_loses_its_open_connections(env):
    daemon, user = env
    with connect_as(daemon.intents, user) as sock:
        sock.sendall(request_line("before", {"action": "status"}))
        assert read_lines(sock, 1)[0]["status"] == "ok"
        (daemon.config_dir / "workloads.toml").write_text("")
        assert rig.reload(daemon).returncode == 0
        assert rig.is_closed(sock)


def test_rate_limited_requests_are_refused_and_audited(make_user, make_daemon, journal):
    user = make_user()
    daemon = make_daemon({"w": user}, {"10.toml": rule("status", rate="3/hour")})
    ids = [f"rl-{uuid.uuid4().hex[:8]}-{i}" for i in range(5)]
    codes = [
        call(daemon.intents, user, {"action": "status"}, rid).get("error", {}).get("code")
        for rid in ids
    ]
    assert codes == [None, None, None, "rate_limited", "rate_limited"]
    [entry] = journal.wait_entries(1, CLAWVISOR_INTENT_ID=ids[3])
    assert entry["CLAWVISOR_DECISION"] == "deny"
    assert entry["CLAWVISOR_OUTCOME"] == "rate_limited"
    assert entry["CLAWVISOR_RULE"] == "policy.d/10.toml:1"


def test_a_notice_over_its_rate_is_denied_in_every_record(make_user, make_daemon, journal):
    """The notify executor's own rate: refused before anything is licensed, and every
    record of the refused intent (and its reply) says deny, not the rule's allow."""
    user = make_user()
    daemon = make_daemon(
        {"w": user},
        {"10.toml": ALLOW.replace("status", "notify")},
        '[server]\nsocket_group = "cvt-no-such-group"\n[executors.notify]\nrate = "1/hour"\n',
    )
    ids = [f"nr-{uuid.uuid4().hex[:8]}-{i}" for i in range(2)]
    replies = [call(daemon.intents, user, {"action": "notify", "message": "hi"}, r) for r in ids]
    assert replies[0]["status"] == "ok" and replies[0]["decision"] == "allow", replies[0]
    assert replies[1]["error"]["code"] == "rate_limited" and replies[1]["decision"] == "deny"
    entries = journal.wait_entries(1, CLAWVISOR_INTENT_ID=ids[1])
    assert entries and {e["CLAWVISOR_DECISION"] for e in entries} == {"deny"}
    assert [e["CLAWVISOR_OUTCOME"] for e in entries] == ["rate_limited"]


def test_default_target_is_where_the_executor_runs(make_user, make_daemon, tmp_path):
    from tests.integration.test_intents_e2e import RECORDER

    a, b = make_user(), make_user()
    rec_dir = rig.shared_tmpdir("clawvisor-rec-")
    rec_dir.chmod(0o1777)
    settings = (
        '[server]\nsocket_group = "cvt-no-such-group"\n[executors.open-url]\n'
        f'argv = ["/usr/bin/python3", "{RECORDER}", "{rec_dir}/r.jsonl", "{{url}}"]\n'
    )
    daemon = make_daemon(
        {"a": a, "b": b}, {"10.policy": "open-url * a @default allow default_target=b\n"}, settings
    )
    try:
        reply = call(daemon.intents, a, {"action": "open-url", "url": "https://e.org/"})
        assert reply["status"] == "ok" and reply["result"]["target"] == "b"
        import json

        rec = json.loads((rec_dir / "r.jsonl").read_text().splitlines()[-1])
        assert rec["uid"] == b.uid
    finally:
        rig.cleanup_root(rec_dir)


GOOD_1 = ALLOW
GOOD_2 = rule("open-url", "*", "deny") + rule("status", "*", "deny")
RULES_OF = {"policy.d/10.toml:1": ("allow", GOOD_1), "policy.d/10.toml:7": ("deny", GOOD_2)}


@pytest.mark.reliability("fault", "broken policy swapped in during a burst")
def test_reload_under_load_never_answers_from_a_half_loaded_policy(make_user, make_daemon):
    users = [make_user() for _ in range(4)]
    daemon = make_daemon(
        {f"w{i}": u for i, u in enumerate(users)},
        {"10.toml": GOOD_1},
        '[server]\nsocket_group = "cvt-no-such-group"\n',
    )
    stop = threading.Event()
    results: list[tuple[int, int, list[dict]]] = []
    errors: list[BaseException] = []

    # seteuid is process-wide, so connect as each user here, before the threads start.
    socks = {u.uid: connect_as(daemon.intents, u) for u in users}

    def client(user):
        sent = 0
        replies: list[dict] = []
        try:
            with socks[user.uid] as sock:
                while not stop.is_set():
                    batch = [
                        request_line(f"{user.name}-{sent + i}", {"action": "status"})
                        for i in range(20)
                    ]
                    sock.sendall(b"".join(batch))
                    replies.extend(read_lines(sock, 20, timeout=30))
                    sent += 20
        except BaseException as exc:  # reported below
            errors.append(exc)
        results.append((user.uid, sent, replies))

    threads = [threading.Thread(target=client, args=(u,)) for u in users]
    for t in threads:
        t.start()
    from supervisor.wire.client import Client

    outcomes = []
    try:
        with Client(daemon.control) as control:
            for n in range(100):
                write_policy(daemon, BROKEN if n % 2 else (GOOD_1 if n % 4 == 0 else GOOD_2))
                if n % 10 == 9:
                    daemon.signal(signal.SIGHUP)  # a broken one, by SIGHUP this time
                    outcomes.append(1)
                    continue
                outcomes.append(0 if control.control("reload")[0].status == "ok" else 1)
                time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    assert outcomes == [0 if n % 2 == 0 else 1 for n in range(100)]
    total = 0
    for _, sent, replies in results:
        assert len(replies) == sent  # nothing lost
        assert [r["id"] for r in replies] == sorted(
            (r["id"] for r in replies), key=lambda i: int(i.rsplit("-", 1)[1])
        )
        for r in replies:
            decision, _ = RULES_OF[r["rule"]]  # the rule exists in a policy that was in force
            assert r["decision"] == decision
        total += sent
    assert total > 0
    assert daemon.alive()


# Two complete policies as directories. A load that mixed them (B's files as A's listing
# names them) would allow status by policy.d/10.toml:3, a rule no complete version decides by.
VERSION_A = {"10.toml": ALLOW}
VERSION_B = {
    "05.toml": rule("status", "*", "deny"),
    "10.toml": "# padding\n\n" + ALLOW,
}
DECIDED_BY = {("allow", "policy.d/10.toml:1"), ("deny", "policy.d/05.toml:1")}


def swap_policy_dir(daemon, files: dict[str, str], n: int) -> None:
    """Replace policy.d whole, as a deploy tool renaming a new tree into place would."""
    etc = daemon.config_dir
    new, old = etc / f"policy.d.new{n}", etc / f"policy.d.old{n}"
    new.mkdir()
    for name, text in files.items():
        (new / name).write_text(text)
    (etc / "policy.d").rename(old)
    new.rename(etc / "policy.d")  # between these two renames there is no policy.d at all
    shutil.rmtree(old)


@pytest.mark.reliability("fault", "policy directory swapped whole during reloads and a burst")
def test_a_policy_directory_swapped_under_a_reload_is_loaded_whole_or_not_at_all(
    make_user, make_daemon
):
    user = make_user()
    daemon = make_daemon({"w": user}, {"10.toml": ALLOW})
    stop = threading.Event()
    replies: list[dict] = []
    reloads: list[str] = []
    sock = connect_as(daemon.intents, user)

    def burst() -> None:
        sent = 0
        with sock:
            while not stop.is_set():
                sock.sendall(
                    b"".join(request_line(f"s-{sent + i}", {"action": "status"}) for i in range(20))
                )
                replies.extend(read_lines(sock, 20, timeout=30))
                sent += 20

    def reload() -> None:
        from supervisor.wire.client import Client

        with Client(daemon.control) as control:
            while not stop.is_set():
                reloads.append(control.control("reload")[0].status)

    workers = [threading.Thread(target=burst), threading.Thread(target=reload)]
    for t in workers:
        t.start()
    try:
        for n in range(300):
            swap_policy_dir(daemon, VERSION_B if n % 2 else VERSION_A, n)
    finally:
        stop.set()
        for t in workers:
            t.join(60)
    assert reloads.count("ok") > 0
    decided = {(r["decision"], r["rule"]) for r in replies}
    assert decided <= DECIDED_BY, decided - DECIDED_BY
    assert daemon.alive()
    # Whatever the last swap left, a reload now loads it whole.
    assert call(daemon.intents, user, {"action": "status"})["status"] in ("ok", "denied")
