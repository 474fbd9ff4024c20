"""The monitors for real: BPF programs loaded, a workload user doing suspicious things, the
events and alerts that follow, and the responses acting on real processes and traffic.

The daemon runs in the workloads' network namespace of tests/helpers/netlab.py so that
its firewall and counters are that namespace's; the BPF programs see the whole machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from supervisor.cgroups import WorkloadCgroup, pids_of
from tests.helpers import rig
from tests.helpers.netlab import ALLOWED, INTERNET, LAN_HOST, make_lab
from tests.helpers.rules import rule
from tests.helpers.stream import Stream

ACTIONS = r"""
import ctypes, os, socket, sys
home = sys.argv[1]
s = socket.socket(); s.settimeout(0.5)
try:
    s.connect(("{lan}", 80))
except OSError:
    pass
with open(os.path.join(home, ".ssh", "authorized_keys"), "a") as f:
    f.write("ssh-ed25519 AAAAC3Nza test\n")
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace(16, 1, 0, 0)
try:
    os.setuid(0)
except PermissionError:
    pass
""".replace("{lan}", LAN_HOST)

TRIGGERS = """
[[trigger]]
name = "freeze-on-freeze-me"
kind = "exec"
severity = "high"
responses = ["alert", "freeze"]
[trigger.match]
filename = { glob = "*/freeze-me" }
"""


@pytest.fixture(scope="module")
def mon(make_user, make_daemon, journal):
    lab = make_lab()
    root = rig.shared_tmpdir("clawvisor-mon-")
    home = root / "home" / "alpha"
    alpha = make_user(home=str(home))
    bystander = make_user()
    home.mkdir(parents=True)
    (home / ".ssh").mkdir()
    for p in (home, home / ".ssh"):
        os.chown(p, alpha.uid, alpha.gid)
    (root / "bin").mkdir()
    shutil.copy("/usr/bin/true", root / "bin" / "freeze-me")
    (root / "actions.py").write_text(ACTIONS)

    def prepare(daemon_root: Path) -> None:
        (daemon_root / "etc" / "triggers.d").mkdir()
        (daemon_root / "etc" / "triggers.d" / "50-test.toml").write_text(TRIGGERS)
        (daemon_root / "state" / "overlay" / "alpha" / "upper").mkdir(parents=True)

    settings = f"""
[server]
socket_group = "cvt-no-such-group"
[provision]
home_root = "{root / "home"}"
dns = ["{LAN_HOST}"]
[monitors]
counters_interval = 0.5
"""
    extra = {
        "alpha": f'internet = "allowlist"\negress_allow = ["{ALLOWED}:8080"]\n'
        'overlay = { lower = "/srv" }'
    }
    daemon = make_daemon(
        {"alpha": alpha, "bystander": bystander},
        {"10.toml": rule("status")},
        settings,
        wrapper=lab.exec(),
        workload_extra=extra,
        prepare=prepare,
    )
    prov = subprocess.run(
        lab.exec(
            str(rig.CLAWVISOR),
            "provision",
            "--only",
            "firewall",
            "--config-dir",
            str(daemon.config_dir),
            "--state-dir",
            str(daemon.root / "state"),
        ),
        capture_output=True,
        text=True,
    )
    assert prov.returncode == 0, prov.stdout + prov.stderr
    stream = Stream(daemon.control)
    status = stream_status(daemon)
    assert status["bpf"]["state"] == "ok", status
    yield lab, daemon, alpha, bystander, stream, root
    stream.sock.close()
    lab.close()
    for uid in (alpha.uid,):
        for pid in pids_of(uid):
            os.kill(pid, signal.SIGKILL)
    rig.cleanup_root(root)


def stream_status(daemon) -> dict[str, dict]:
    with rig.connect_as(daemon.control, None) as c:
        c.sendall(b'{"id":"s","op":"status"}\n')
        reply = rig.read_lines(c, 1)[0]
    return {m["name"]: m for m in reply["result"]["monitors"]}


def as_user(user, argv, **kw):
    return subprocess.Popen(argv, **rig.as_user(user), **kw)


@pytest.fixture(scope="module")
def acted(mon):
    _, _, alpha, _, _, root = mon
    proc = as_user(
        alpha,
        [
            "/usr/bin/python3",
            "-S",
            str(root / "actions.py"),
            str(root / "home" / "alpha"),
            "second arg",
        ],
    )
    proc.wait(30)
    subprocess.run(["/bin/true"], check=True)  # root: must not be seen
    socket.socket().close()
    return proc.pid


def test_exec_arrives_with_argv_uid_workload_pid_and_parent(mon, acted):
    stream = mon[4]
    [e] = stream.find(lambda i: i["kind"] == "exec" and i.get("pid") == acted)[:1]
    assert e["argv"] == [
        "/usr/bin/python3",
        "-S",
        str(mon[5] / "actions.py"),
        str(mon[5] / "home" / "alpha"),
        "second arg",
    ]
    assert (e["uid"], e["workload"], e["ppid"]) == (mon[2].uid, "alpha", os.getpid())
    assert e["filename"] == "/usr/bin/python3"


def test_connect_to_the_lan_host_is_seen_and_alerted(mon, acted):
    stream = mon[4]
    [c] = stream.find(lambda i: i["kind"] == "connect" and i.get("pid") == acted)[:1]
    assert (c["family"], c["addr"], c["port"]) == ("inet", LAN_HOST, 80)
    assert c["uid"] == mon[2].uid and c["workload"] == "alpha"
    assert stream.find(lambda i: i.get("alert") == "lan-connect" and i.get("pid") == acted)


def test_writing_authorized_keys_is_seen_and_alerted(mon, acted):
    stream = mon[4]
    path = str(mon[5] / "home" / "alpha" / ".ssh" / "authorized_keys")
    [o] = stream.find(lambda i: i["kind"] == "open" and i.get("path") == path)[:1]
    assert o["write"] and o["pid"] == acted
    assert stream.find(lambda i: i.get("alert") == "persistence-write" and i.get("path") == path)


def test_ptrace_and_setuid_attempts_are_seen_and_alerted(mon, acted):
    stream = mon[4]
    [p] = stream.find(lambda i: i["kind"] == "ptrace" and i.get("pid") == acted)[:1]
    assert (p["request"], p["target_pid"]) == (16, 1)
    [s] = stream.find(lambda i: i["kind"] == "setuid" and i.get("pid") == acted)[:1]
    assert (s["call"], s["ids"]) == ("setuid", [0])
    assert stream.find(lambda i: i.get("alert") == "ptrace" and i.get("pid") == acted)
    assert stream.find(lambda i: i.get("alert") == "setuid-attempt" and i.get("pid") == acted)


def test_alerts_are_in_the_audit_trail(mon, acted, journal):
    recs = journal.wait_entries(
        1, CLAWVISOR_KIND="alert", CLAWVISOR_RULE="ptrace", CLAWVISOR_WORKLOAD="alpha"
    )
    assert recs and recs[-1]["PRIORITY"] == "3" and "[high] ptrace" in recs[-1]["MESSAGE"]


def test_other_uids_produce_no_events(mon, acted):
    stream = mon[4]
    time.sleep(0.5)
    with stream.lock:
        uids = {i.get("uid") for i in stream.items if i["kind"] not in ("net", "monitor", "file")}
    assert uids <= {mon[2].uid}


def ticker(mon):
    """A process of alpha that bumps a counter file every 20 ms; returns (proc, read)."""
    out = mon[5] / "tick"
    out.write_text("0" * 12)
    out.chmod(0o666)
    # Overwritten in place, never truncated: a reader always sees a whole count, even
    # when the freezer stops the ticker between two writes.
    code = (
        f"import os, time\nfd = os.open({str(out)!r}, os.O_WRONLY)\nn = 0\nwhile True:\n"
        f"    n += 1\n    os.pwrite(fd, b'%012d' % n, 0)\n    time.sleep(0.02)\n"
    )
    proc = as_user(mon[2], ["/usr/bin/python3", "-S", "-c", code])

    def read() -> int:
        return int(out.read_text())

    deadline = time.monotonic() + 10
    while read() < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc, read


def respond(mon, what: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(rig.CLAWVISOR), what, "--socket", str(mon[1].control), "alpha"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_trigger_freezes_the_workload_and_thaw_resumes_it(mon):
    proc, count = ticker(mon)
    try:
        runner = as_user(mon[2], [str(mon[5] / "bin" / "freeze-me")])
        runner.wait(10)
        cg = WorkloadCgroup("alpha")
        deadline = time.monotonic() + 10
        while not cg.frozen():
            assert time.monotonic() < deadline, "the trigger did not freeze the workload"
            time.sleep(0.05)
        assert "frozen 1" in (cg.path / "cgroup.events").read_text()
        assert proc.pid in cg.members()
        before = count()
        time.sleep(0.5)
        assert count() == before  # frozen: it does not run
        out = respond(mon, "thaw")
        assert out.returncode == 0, out.stderr
        time.sleep(0.5)
        assert count() > before
    finally:
        proc.kill()
        proc.wait()


def test_kill_leaves_no_process_of_the_workload(mon):
    procs = [as_user(mon[2], ["/usr/bin/sleep", "300"]) for _ in range(3)]
    fork_forever = (
        "import os, time\nwhile True:\n    if os.fork() == 0:\n"
        "        time.sleep(60)\n        os._exit(0)\n    time.sleep(0.05)\n"
    )
    forker = as_user(mon[2], ["/usr/bin/python3", "-S", "-c", fork_forever])
    time.sleep(0.3)
    assert len(pids_of(mon[2].uid)) >= 4
    out = respond(mon, "kill")
    assert out.returncode == 0, out.stderr
    assert pids_of(mon[2].uid) == []
    for p in [*procs, forker]:
        p.wait(5)


def connect_as_alpha(mon, host: str, port: int, send: int = 0) -> str:
    code = (
        f"import socket\ns = socket.socket(); s.settimeout(1.5)\n"
        f"try:\n    s.connect(({host!r}, {port}))\n    s.sendall(b'x' * {send})\n"
        f"    s.shutdown(socket.SHUT_WR)\n    s.recv(1)\n    print('connected')\n"
        f"except OSError as e:\n    print(type(e).__name__)\n"
    )
    alpha = mon[2]
    # nsenter enters the namespace as root, then becomes the workload's user.
    argv = [
        "nsenter",
        f"--net=/run/netns/{mon[0].ws}",
        "--setuid",
        str(alpha.uid),
        "--setgid",
        str(alpha.gid),
        "--",
        "/usr/bin/python3",
        "-S",
        "-c",
        code,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_cut_network_breaks_an_allowed_connection_until_restored(mon):
    assert connect_as_alpha(mon, ALLOWED, 8080) == "connected"
    assert respond(mon, "cut-network").returncode == 0
    try:
        assert connect_as_alpha(mon, ALLOWED, 8080) != "connected"
    finally:
        assert respond(mon, "restore-network").returncode == 0
    assert connect_as_alpha(mon, ALLOWED, 8080) == "connected"


def test_accepted_counter_grows_by_the_bytes_sent(mon):
    stream = mon[4]
    mark = len(stream.items)
    sent = 200_000
    assert connect_as_alpha(mon, ALLOWED, 8080, send=sent) == "connected"
    time.sleep(1.5)  # two counter readings
    with stream.lock:
        nets = [
            i
            for i in stream.items[mark:]
            if i["kind"] == "net" and i["workload"] == "alpha" and i["reason"] in ("accept", "est")
        ]
    total = sum(i["bytes"] for i in nets)
    packets = sum(i["packets"] for i in nets)
    assert sent <= total <= sent + 100 * packets, (total, packets)


def test_a_blocked_destination_raises_the_drop_counter_and_the_trigger(mon):
    stream = mon[4]
    assert connect_as_alpha(mon, INTERNET, 443) != "connected"
    found = stream.find(
        lambda i: (
            i["kind"] == "net"
            and i.get("reason") == "drop"
            and i["workload"] == "alpha"
            and i.get("alert") == "firewall-drop"
        )
    )
    assert found and found[0]["packets"] >= 1


def test_status_reports_each_monitor(mon, acted):
    deadline = time.monotonic() + 10
    status = stream_status(mon[1])
    while status["nftables"]["state"] != "ok" and time.monotonic() < deadline:
        time.sleep(0.2)  # the table was provisioned after start: the next reading finds it
        status = stream_status(mon[1])
    assert status["bpf"]["state"] == "ok"
    assert "tracepoints attached" in status["bpf"]["detail"]
    assert status["bpf"]["counts"]["events"] > 0
    assert status["bpf"]["counts"]["lost"] == 0
    assert status["nftables"]["counts"]["reads"] > 0
    assert status["overlay"]["state"] == "ok"
    assert status["nftables"]["state"] == "ok"


def test_a_bpf_program_that_does_not_load_is_degraded_not_fatal(tmp_path, monkeypatch):
    import asyncio

    from supervisor.monitors import syscalls

    bad = tmp_path / "broken.c"
    bad.write_text("this is not C;\n")
    monkeypatch.setattr(syscalls, "BPF_SOURCE", bad)
    published = []
    monitor = syscalls.SyscallMonitor(published.append)

    async def go() -> bool:
        return monitor.start(asyncio.get_running_loop())

    assert asyncio.run(go()) is False
    assert monitor.status.state == "degraded"
    assert "did not load" in monitor.status.detail
    assert published[-1].state == "degraded"
