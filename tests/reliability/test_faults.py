"""Faults the daemon must survive, each with its expected outcome checked."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import rig
from tests.helpers.hide_dir import hiding_journald
from tests.helpers.private_journald import PrivateJournald, status_through_an_outage
from tests.helpers.rig import call, connect_as, read_lines, request_line
from tests.helpers.rules import rule

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
RECORDER = HELPERS / "recorder.py"
PY = "/usr/bin/python3"
STATUS = rule("status")
ALLOW_ALL = rule("*", "w")


def verify(daemon: rig.Daemon, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(rig.CLAWVISOR),
            "audit",
            "verify",
            "--state-dir",
            str(daemon.root / "state"),
            "--log-dir",
            str(daemon.root / "log"),
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


# --- journald killed ------------------------------------------------------------------------


@pytest.mark.reliability("fault", "journald killed mid-run, then back")
def test_journald_killed_mid_run_loses_no_record(make_user, make_daemon, row):
    user = make_user()
    with PrivateJournald() as jd:
        daemon = make_daemon({"w": user}, {"10.toml": STATUS}, wrapper=jd.client_wrapper())
        prefix = f"j{uuid.uuid4().hex[:6]}-"
        ids = [f"{prefix}{i}" for i in range(300)]
        status_through_an_outage(jd, daemon.intents, user, ids, down=100, up=200)
        deadline = time.monotonic() + 20
        while True:
            in_journal = {
                e.get("CLAWVISOR_INTENT_ID") for e in jd.entries("SYSLOG_IDENTIFIER=clawvisor")
            }
            in_fallback = {r.get("intent_id") for r in daemon.fallback_records()}
            missing = set(ids) - in_journal - in_fallback
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        row.requests, row.lost = len(ids), len(missing)
        assert not missing, sorted(missing)[:5]
        assert ids[150] in in_fallback and ids[150] not in in_journal  # while it was down
        assert ids[-1] in in_journal  # and back to journald once it returned
        stderr = daemon.stderr()
        assert "journald unreachable" in stderr and "reachable again" in stderr
        checked = verify(daemon, "--journal-dir", str(jd.files))
        assert checked.returncode == 0, checked.stdout
        row.note(checked.stdout.splitlines()[0].split(": ", 1)[1])
        daemon.stop()


# --- the log directory's disk full ----------------------------------------------------------


def _full_disk_daemon(make_user, make_daemon, choice: str):
    user = make_user()
    root_holder: list[Path] = []

    def prepare(root: Path) -> None:
        (root / "log").mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0750", "tmpfs", str(root / "log")],
            check=True,
        )
        (root / "rec").mkdir(mode=0o1777)
        (root / "rec").chmod(0o1777)
        root_holder.append(root)

    rec = [PY, str(RECORDER)]
    settings = (
        '[server]\nsocket_group = "cvt-no-such-group"\n'
        f'[audit]\nreadonly_when_unavailable = "{choice}"\n'
        "[executors.search]\n"
        f"argv = {json.dumps([*rec, '@ROOT@/rec/search.jsonl', '{url}'])}\n"
        "[executors.workload-start]\n"
        f"argv = {json.dumps([*rec, '@ROOT@/rec/start.jsonl', '{target}'])}\n"
    )

    def prepare_all(root: Path) -> None:
        prepare(root)
        cfg = root / "etc" / "clawvisor.toml"
        cfg.write_text(cfg.read_text().replace("@ROOT@", str(root)))

    try:
        daemon = make_daemon(
            {"w": user},
            {"10.toml": ALLOW_ALL},
            settings,
            wrapper=hiding_journald(),
            prepare=prepare_all,
        )
    except Exception:
        for root in root_holder:
            subprocess.run(["umount", "--lazy", str(root / "log")], check=False)
        raise
    return daemon, user


def _fill(path: Path) -> Path:
    """Fill the filesystem under `path` to the last byte; the filler file."""
    filler = path / "filler"
    with filler.open("wb", buffering=0) as f:
        for size in (65536, 4096, 512, 64, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)
    return filler


def _executed(daemon: rig.Daemon, name: str) -> int:
    path = daemon.root / "rec" / name
    return len(path.read_text().splitlines()) if path.exists() else 0


def _disk_full(make_user, make_daemon, row, choice: str) -> None:
    daemon, user = _full_disk_daemon(make_user, make_daemon, choice)
    log = daemon.root / "log"
    try:
        filler = _fill(log)
        prefix = f"d{uuid.uuid4().hex[:6]}-"
        # The fallback file's last page may still hold a record or two: use it up.
        ran = 0
        for i in range(100):
            rid = f"{prefix}slack{i}"
            reply = call(daemon.intents, user, {"action": "workload-start", "target": "w"}, rid)
            if reply["status"] != "ok":
                assert reply["error"]["code"] == "unavailable", reply
                break
            ran += 1
        assert _executed(daemon, "start.jsonl") == ran  # each that ran has its record
        mutating = [f"{prefix}m{i}" for i in range(20)]
        readonly = [f"{prefix}r{i}" for i in range(20)]
        for rid in mutating:
            reply = call(daemon.intents, user, {"action": "workload-start", "target": "w"}, rid)
            assert reply["error"]["code"] == "unavailable", reply
        assert _executed(daemon, "start.jsonl") == ran  # nothing mutating ran unaudited
        for rid in readonly:
            reply = call(daemon.intents, user, {"action": "search", "query": rid}, rid)
            if choice == "serve":
                assert reply["status"] == "ok", reply
            else:
                assert reply["error"]["code"] == "unavailable", reply
        assert _executed(daemon, "search.jsonl") == (20 if choice == "serve" else 0)
        filler.unlink()  # space again: what waited is written, then the next record
        after = f"{prefix}after"
        reply = call(daemon.intents, user, {"action": "workload-start", "target": "w"}, after)
        assert reply["status"] == "ok", reply
        assert _executed(daemon, "start.jsonl") == ran + 1
        recorded = {r.get("intent_id") for r in daemon.fallback_records()}
        ids = [*mutating, *readonly, after]
        row.requests, row.lost = len(ids), len(set(ids) - recorded)
        assert row.lost == 0
        checked = verify(daemon)
        assert checked.returncode == 0, checked.stdout  # no torn line, no gap
        daemon.stop()
    finally:
        daemon.stop()
        subprocess.run(["umount", "--lazy", str(log)], check=False)


@pytest.mark.reliability("fault", "log disk full, read-only intents served")
def test_a_full_log_disk_refuses_mutating_intents_and_serves_read_only_ones(
    make_user, make_daemon, row
):
    _disk_full(make_user, make_daemon, row, "serve")


@pytest.mark.reliability("fault", "log disk full, read-only intents refused")
def test_a_full_log_disk_refuses_everything_when_so_configured(make_user, make_daemon, row):
    _disk_full(make_user, make_daemon, row, "refuse")


# --- an approval agent killed holding a prompt ---------------------------------------------

ASK = (
    "\n"
    + rule(
        "open-url",
        "w",
        "ask",
        "@self",
        timeout=2,
        params={"url": '{ domain = "killed.example" }'},
        dotted=True,
    )
    + rule("open-url", "w", "ask", "@self", timeout=60)
)


@pytest.mark.reliability("fault", "approval agent killed holding a prompt")
def test_an_agent_killed_with_a_prompt_leaves_it_to_time_out_and_others_answer(
    make_user, make_group, make_daemon, journal, row
):
    group = make_group()
    user, op, op2 = make_user(), make_user(groups=(group,)), make_user(groups=(group,))
    daemon = make_daemon(
        {"w": user},
        {"10.toml": ASK},
        '[server]\nsocket_group = "cvt-no-such-group"\n'
        f'control_group = "{group}"\n[executors.open-url]\nargv = ["/bin/true", "{{url}}"]\n',
    )
    agent = subprocess.Popen(
        [str(rig.CLAWVISOR), "approver", "cli", "--socket", str(daemon.control)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        **rig.as_user(op),
    )
    other = connect_as(daemon.control, op2)
    other.sendall(b'{"id":"s","op":"subscribe","agent":"desktop"}\n')
    assert read_lines(other, 1)[0]["status"] == "ok"
    try:
        assert "waiting for requests" in (agent.stdout.readline() if agent.stdout else "")
        held = connect_as(daemon.intents, user)
        held.sendall(request_line("held", {"action": "open-url", "url": "https://killed.example/"}))
        seen = ""
        while "Allow?" not in seen:
            seen += agent.stdout.read(1) if agent.stdout else ""
        agent.send_signal(signal.SIGKILL)  # by its own pid, mid-prompt
        agent.wait(10)
        # Another request: the surviving agent answers it.
        sock = connect_as(daemon.intents, user)
        sock.sendall(request_line("next", {"action": "open-url", "url": "https://ok.example/"}))
        pending = None
        while pending is None or pending["params"]["url"] != "https://ok.example/":
            [event] = read_lines(other, 1)
            pending = event.get("request") if event.get("event") == "pending" else pending
        other.sendall(
            json.dumps(
                {
                    "id": "v",
                    "op": "verdict",
                    "request": pending["id"],
                    "digest": pending["digest"],
                    "allow": True,
                    "agent": "desktop",
                }
            ).encode()
            + b"\n"
        )
        assert read_lines(sock, 1, timeout=20)[0]["status"] == "ok"
        reply = read_lines(held, 1, timeout=20)[0]
        assert reply["error"]["code"] == "approval_timeout", reply
        held.close()
        sock.close()
    finally:
        other.close()
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert daemon.alive()


# --- nftables transaction failing half-way --------------------------------------------------


@pytest.mark.reliability("fault", "nftables transaction failing half-way")
def test_a_firewall_transaction_failing_half_way_keeps_the_old_ruleset_whole(row):
    ns = f"cvtnft{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        proc = subprocess.run(
            [
                "nsenter",
                f"--net=/run/netns/{ns}",
                "--",
                sys.executable,
                "-m",
                "tests.reliability.nft_half",
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=str(rig.REPO),
            timeout=60,
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["refused"], result
    assert result["before"] == result["after"]
    row.note(f"{result['rules']} rules kept after a refused batch of {result['batch']}")


# --- a crash while journald lags --------------------------------------------------------------


@pytest.mark.reliability("fault", "daemon SIGKILLed while journald lags: a restart, not a fork")
def test_a_daemon_killed_while_journald_lags_does_not_fork_the_chain(make_user, make_daemon, row):
    """journald SIGSTOPped stands in for a slow one: the daemon's records wait in its
    socket queue, the daemon is killed and restarted (it cannot see them and goes on
    from an earlier seq), then journald catches up with the dead run's records."""
    user = make_user()
    with PrivateJournald() as jd:
        daemon = make_daemon({"w": user}, {"10.toml": STATUS}, wrapper=jd.client_wrapper())
        prefix = f"lag{uuid.uuid4().hex[:6]}-"

        def burst(tag: str, n: int) -> list[str]:
            ids = [f"{prefix}{tag}{i}" for i in range(n)]
            with connect_as(daemon.intents, user) as sock:
                for rid in ids:
                    sock.sendall(request_line(rid, {"action": "status"}))
                    assert read_lines(sock, 1)[0]["status"] == "ok"
            return ids

        ids = burst("a", 20)
        assert jd.proc is not None
        jd.proc.send_signal(signal.SIGSTOP)
        try:
            # Fewer than its socket queue holds (net.unix.max_dgram_qlen): they wait there,
            # sent as far as the daemon knows, unwritten, where the next start cannot see.
            ids += burst("b", 5)
            daemon.proc.send_signal(signal.SIGKILL)
            daemon.proc.wait(10)
            again = rig.start_daemon(daemon.root, wrapper=jd.client_wrapper())
            daemon.proc, daemon.notify, daemon.said = again.proc, again.notify, again.said
        finally:
            jd.proc.send_signal(signal.SIGCONT)
        ids += burst("c", 10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = {e.get("CLAWVISOR_INTENT_ID") for e in jd.entries("SYSLOG_IDENTIFIER=clawvisor")}
            got |= {r.get("intent_id") for r in daemon.fallback_records()}
            if set(ids) <= got:
                break
            time.sleep(0.3)
        assert set(ids) <= got, sorted(set(ids) - got)[:5]
        checked = verify(daemon, "--journal-dir", str(jd.files))
        row.requests = len(ids)
        row.note(checked.stdout.splitlines()[0].split(": ", 1)[1])
        assert checked.returncode == 0, checked.stdout
        assert "2 run(s)" in checked.stdout
        assert "a restart, not a fork" in checked.stdout  # it did restart from an earlier seq
        daemon.stop()
