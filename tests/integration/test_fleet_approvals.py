"""One operator, every VM: one CLI approval agent following two daemons' control sockets
(as forwarded from two VMs with `ssh -L`), each prompt naming its VM, each verdict going
back to the daemon that asked and recorded in that daemon's own trail."""

from __future__ import annotations

import signal
import subprocess
import uuid

import msgspec
import pytest

from supervisor.audit.chain import HEAD_FILE, Head
from tests.helpers import rig
from tests.helpers.rig import connect_as, read_lines, request_line
from tests.integration.test_approvals import POLICY, settings


@pytest.fixture(scope="module")
def vms(make_group, make_user, make_daemon, journal):
    group = make_group()
    op = make_user(groups=(group,))
    root = rig.shared_tmpdir("clawvisor-fleet-")
    out = {}
    for name in ("vm1", "vm2"):
        alpha = make_user()
        (root / name).mkdir(mode=0o1777)
        (root / name).chmod(0o1777)
        rec = root / name / "r.jsonl"
        daemon = make_daemon({"alpha": alpha}, {"10.toml": POLICY}, settings(group, rec))
        out[name] = (daemon, alpha)
    yield out, op
    rig.cleanup_root(root)


def ask(daemon, alpha, url: str):
    sock = connect_as(daemon.intents, alpha)
    intent = {"action": "open-url", "target": "alpha", "url": url}
    sock.sendall(request_line(f"v-{uuid.uuid4().hex[:6]}", intent))
    return sock


def chain_of(daemon) -> str:
    head = msgspec.json.decode((daemon.root / "state" / HEAD_FILE).read_bytes(), type=Head)
    return head.chain


def read_prompt(proc) -> str:
    seen = ""
    while "Allow?" not in seen:
        ch = proc.stdout.read(1)
        assert ch, seen
        seen += ch
    return seen


def test_one_cli_agent_answers_each_vm_and_each_trail_has_its_own_verdict(vms, journal):
    daemons, op = vms
    argv = [str(rig.CLAWVISOR), "approver", "cli"]
    for name, (daemon, _) in daemons.items():
        argv += ["--socket", f"{name}={daemon.control}"]
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **rig.as_user(op)
    )
    try:
        assert "waiting for requests on vm1, vm2" in proc.stdout.readline()
        for name, (daemon, alpha) in daemons.items():
            url = f"https://{name}.example/{uuid.uuid4().hex[:6]}"
            with ask(daemon, alpha, url) as sock:
                prompt = read_prompt(proc)
                assert f"[{name}] alpha wants open-url in alpha" in prompt and url in prompt
                proc.stdin.write("y\n")
                proc.stdin.flush()
                assert read_lines(sock, 1)[0]["status"] == "ok"
            # The verdict is in this VM's own trail (its chain), by the operator's agent.
            mine = journal.wait_entries(
                1, CLAWVISOR_CHAIN=chain_of(daemon), CLAWVISOR_APPROVER=f"cli uid:{op.uid}"
            )
            assert mine
        assert chain_of(daemons["vm1"][0]) != chain_of(daemons["vm2"][0])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def test_several_sockets_must_each_be_named(vms):
    daemons, _ = vms
    d = next(iter(daemons.values()))[0]
    out = subprocess.run(
        [str(rig.CLAWVISOR), "approver", "cli", "--socket", str(d.control), "--socket", "x"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "NAME=PATH" in out.stdout
