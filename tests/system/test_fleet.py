"""Many VMs, one operator, with real parts: three Debian 12 containers booted with
systemd-nspawn, clawvisor installed in each from its .deb. Two are VMs running clawvisor
with a workload each, shipping their trail (`[fleet] collector`, provisioned) with
systemd-journal-upload to the third, the collector (`clawvisor fleet collector`: stunnel
requiring a fleet client certificate, then systemd-journal-remote). One CLI approval
agent on the collector answers an ask from each VM over control sockets forwarded with
`ssh -L`, and each VM's trail records its own verdict.

The network is three namespaces joined by veth pairs, made here and removed afterwards
(nothing in the host's own): vm1 10.77.1.2 and vm2 10.77.2.2, the collector 10.77.1.1
and 10.77.2.1. The tests share the boxes and run in file order.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import nspawn
from tests.helpers.rules import rule

CLAWVISOR = "/opt/clawvisor/current/bin/clawvisor"
REMOTE_DIR = "/var/log/journal/remote"
CA_DIR = "/etc/clawvisor/fleet-ca"
URL = "https://collector:19532"
VMS = ("vm1", "vm2")
WORKLOADS = """
[workloads.alpha]
user = "wl-alpha"
internet = "none"
"""
POLICY = "\n" + rule("status") + rule("search", "alpha", "ask", "@self")
SETTINGS = """
[executors.search]
argv = ["/usr/bin/python3", "-c", "import sys; print(sys.argv[1])", "{url}"]

[fleet]
collector = "https://collector:19532"
certs = "/etc/clawvisor/fleet"
name = "{vm}"
"""


def ip(ns: str, *argv: str) -> None:
    subprocess.run(["ip", "-n", ns, *argv], check=True, capture_output=True)


@contextlib.contextmanager
def network() -> Iterator[dict[str, str]]:
    """Three network namespaces: the collector's, joined to each VM's by a veth pair made
    inside the VM's namespace (never in the host's)."""
    tag = f"cvtfl{os.getpid()}"
    names = {"collector": f"{tag}c", "vm1": f"{tag}1", "vm2": f"{tag}2"}
    try:
        for ns in names.values():
            subprocess.run(["ip", "netns", "add", ns], check=True)
            ip(ns, "link", "set", "lo", "up")
        for i, vm in enumerate(VMS, 1):
            ns = names[vm]
            subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "add", "eth0", "type",
                            "veth", "peer", "name", f"v{i}", "netns", names["collector"]],
                           check=True)  # fmt: skip
            ip(ns, "addr", "add", f"10.77.{i}.2/24", "dev", "eth0")
            ip(ns, "link", "set", "eth0", "up")
            ip(names["collector"], "addr", "add", f"10.77.{i}.1/24", "dev", f"v{i}")
            ip(names["collector"], "link", "set", f"v{i}", "up")
        yield names
    finally:
        for ns in names.values():
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def machine_id(name: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.clawvisor.test").hex


def texts_for(name: str, i: int) -> dict[str, str]:
    out = {
        "/etc/hostname": f"{name}\n",
        "/etc/machine-id": machine_id(name) + "\n",
        "/etc/hosts": f"127.0.0.1 localhost {name}\n10.77.{i}.1 collector\n",
    }
    if name != "collector":
        out["/etc/clawvisor/workloads.toml"] = WORKLOADS
        out["/etc/clawvisor/policy.d/10-test.toml"] = POLICY
        out["/etc/clawvisor/clawvisor.toml"] = SETTINGS.replace("{vm}", name)
    return out


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("fleet-build") / "clawvisor"
    nspawn.copy_tree(nspawn.source_files(), nspawn.REPO, tree)
    return nspawn.build(tree)[1]


@pytest.fixture(scope="module")
def boxes(deb) -> Iterator[dict[str, nspawn.Box]]:
    nspawn.rootfs()  # made once, before the boxes boot side by side on it
    with network() as nets:
        booting = {
            name: nspawn.booted(
                {"/root/clawvisor.deb": deb},
                name=name,
                netns=nets[name],
                texts=texts_for(name, max(i, 1)),
            )
            for i, name in enumerate(("collector", *VMS))
        }
        up: dict[str, Any] = {}
        out: dict[str, nspawn.Box] = {}
        try:
            with ThreadPoolExecutor(3) as pool:
                started = {name: pool.submit(cm.__enter__) for name, cm in booting.items()}
                for name, future in started.items():
                    with contextlib.suppress(Exception):  # raised below, once all are up
                        out[name] = future.result()
                        up[name] = booting[name]
                for future in started.values():
                    future.result()
                list(pool.map(lambda b: b.ok("dpkg", "-i", "/root/clawvisor.deb", timeout=600),
                              out.values()))  # fmt: skip
            yield out
        finally:
            # Stopped side by side too: each may take its grace period.
            with ThreadPoolExecutor(3) as pool:
                list(pool.map(lambda cm: cm.__exit__(None, None, None), up.values()))


def send(box: nspawn.Box, action: str, *params: str) -> dict:
    proc = box.run("runuser", "-u", "wl-alpha", "--", CLAWVISOR, "send", "--socket",
                   "/run/clawvisor/intents.sock", action, *params, timeout=120)  # fmt: skip
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def trail(box: nspawn.Box, *match: str) -> list[dict]:
    out = box.ok("journalctl", "--namespace=clawvisor", "-o", "json", "--no-pager", *match)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def chain(box: nspawn.Box) -> str:
    return trail(box, "SYSLOG_IDENTIFIER=clawvisor")[-1]["CLAWVISOR_CHAIN"]


def collected(collector: nspawn.Box) -> list[dict]:
    proc = collector.run(CLAWVISOR, "audit", "verify", "--journal-dir", REMOTE_DIR, "--json")
    return [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]


def arrived(collector: nspawn.Box, host: str, chain_id: str, seq: int) -> bool:
    return any(o.get("host") == host and o.get("chain") == chain_id
               and o.get("state") == "intact" and o["report"]["last"] >= seq
               for o in collected(collector))  # fmt: skip


@pytest.fixture(scope="module")
def fleet(boxes) -> dict[str, nspawn.Box]:
    """The collector set up with `fleet certs` and `fleet collector`; each VM provisioned
    with its certificate copied in, and shipping."""
    c = boxes["collector"]
    c.ok(CLAWVISOR, "fleet", "certs", "--dir", CA_DIR, "--collector", "collector",
         "--address", "10.77.1.1", "--address", "10.77.2.1",
         *[arg for v in VMS for arg in ("--vm", v)])  # fmt: skip
    c.ok(CLAWVISOR, "fleet", "collector", "--certs", CA_DIR, "--name", "collector",
         "--listen", "0.0.0.0:19532", "--output", REMOTE_DIR)  # fmt: skip
    c.ok("systemctl", "daemon-reload")
    c.ok("systemctl", "enable", "--now", "clawvisor-fleet-tls.service")
    ca = c.root / CA_DIR.lstrip("/")

    def provision(vm: str) -> str:
        for name in ("ca.pem", f"{vm}.pem", f"{vm}.key"):
            boxes[vm].write(f"/etc/clawvisor/fleet/{name}", (ca / name).read_text(), 0o600)
        return boxes[vm].ok(CLAWVISOR, "provision", timeout=300)

    with ThreadPoolExecutor(len(VMS)) as pool:  # each VM provisions itself: side by side
        for out in pool.map(provision, VMS):
            assert "clawvisor-fleet-upload.service" in out, out
    return boxes


def exposure(box: nspawn.Box, unit: str) -> float:
    """systemd-analyze security's overall exposure of a running unit (0 best, 10 worst)."""
    assert box.prop(unit, "ActiveState") == "active", box.run("journalctl", "-u", unit).stdout
    last = box.ok("systemd-analyze", "security", "--no-pager", unit).splitlines()[-1]
    score = float(re.search(r"exposure level .*?: ([0-9.]+)", last)[1])
    print(f"{unit}: exposure {score}")
    return score


def test_the_collectors_and_the_uploads_units_run_hardened(fleet):
    c = fleet["collector"]
    for unit in ("clawvisor-fleet-tls.service", "clawvisor-fleet-collector.service"):
        assert exposure(c, unit) <= 2.5
    for vm in VMS:
        assert exposure(fleet[vm], "clawvisor-fleet-upload.service") <= 2.5


def test_each_vm_ships_its_trail_and_the_records_arrive_with_its_host(fleet):
    c = fleet["collector"]
    for vm in VMS:
        assert send(fleet[vm], "status")["status"] == "ok"
        box = fleet[vm]
        last = int(trail(box, "SYSLOG_IDENTIFIER=clawvisor")[-1]["CLAWVISOR_SEQ"])
        here = functools.partial(arrived, c, vm, chain(box), last)
        c.wait_for(here, timeout=90, what=f"{vm} on the collector")
    got = collected(c)
    chains = {(o["host"], o["chain"]) for o in got if "chain" in o}
    assert {h for h, _ in chains} == set(VMS), got
    assert chain(fleet["vm1"]) != chain(fleet["vm2"])


def test_one_cli_agent_answers_each_vm_over_ssh_forwarded_sockets(fleet):
    c = fleet["collector"]
    c.ok("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/root/.ssh/id_ed25519")
    pub = (c.root / "root/.ssh/id_ed25519.pub").read_text()
    c.ok("install", "-d", "-m", "0700", "/run/fleet")
    argv = [CLAWVISOR, "approver", "cli"]
    for i, vm in enumerate(VMS, 1):
        fleet[vm].write("/root/.ssh/authorized_keys", pub, 0o600)
        c.ok("systemd-run", f"--unit=fleet-forward-{vm}", "ssh", "-N", "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "StreamLocalBindUnlink=yes", "-o", "ExitOnForwardFailure=yes",
             "-L", f"/run/fleet/{vm}.sock:/run/clawvisor/control.sock",
             f"root@10.77.{i}.2")  # fmt: skip
        sock = f"/run/fleet/{vm}.sock"
        c.wait_for(functools.partial(lambda s: c.run("test", "-S", s).returncode == 0, sock),
                   what=f"the forwarded socket of {vm}")  # fmt: skip
        argv += ["--socket", f"{vm}=/run/fleet/{vm}.sock"]
    agent = c.popen(*argv)
    try:
        assert agent.stdout is not None and agent.stdin is not None
        assert "waiting for requests" in agent.stdout.readline()
        for vm in VMS:
            box = fleet[vm]
            query = f"q-{vm}-{uuid.uuid4().hex[:6]}"
            with ThreadPoolExecutor(1) as pool:
                reply = pool.submit(send, box, "search", f"query={query}")
                seen = ""
                while "Allow?" not in seen:
                    ch = agent.stdout.read(1)
                    assert ch, seen
                    seen += ch
                assert f"[{vm}] alpha wants search" in seen and query in seen, seen
                agent.stdin.write("y\n")
                agent.stdin.flush()
                assert reply.result(120)["status"] == "ok"
            verdicts = [e for e in trail(box, "SYSLOG_IDENTIFIER=clawvisor")
                        if e.get("CLAWVISOR_APPROVER", "").startswith("cli")]  # fmt: skip
            assert verdicts, f"no verdict by the CLI agent in {vm}'s own trail"
    finally:
        # SIGINT to the agent itself (nsenter's child, by its pid), as Ctrl-C would.
        for child in Path(f"/proc/{agent.pid}/task/{agent.pid}/children").read_text().split():
            os.kill(int(child), signal.SIGINT)
        agent.wait(30)
        for vm in VMS:
            c.run("systemctl", "stop", f"fleet-forward-{vm}")


def test_a_vm_whose_certificate_another_ca_signed_is_refused(fleet):
    c, vm2 = fleet["collector"], fleet["vm2"]
    for vm in VMS:  # nothing else uploads while this is measured
        fleet[vm].ok("systemctl", "stop", "clawvisor-fleet-upload.service")
    before = c.ok("du", "-sb", REMOTE_DIR).split()[0]
    vm2.ok(CLAWVISOR, "fleet", "certs", "--dir", "/root/rogue", "--vm", "vm2")
    directory = f"/var/log/journal/{machine_id('vm2')}.clawvisor"
    up = vm2.run(CLAWVISOR, "fleet", "upload", "--url", URL, "--certs", "/root/rogue",
                 "--vm", "vm2", "--journal-dir", directory, "--state", "/root/rogue-state",
                 "--timeout", "20", timeout=60)  # fmt: skip
    assert up.returncode != 0, up.stdout + up.stderr
    assert c.ok("du", "-sb", REMOTE_DIR).split()[0] == before
    for vm in VMS:
        fleet[vm].ok("systemctl", "start", "clawvisor-fleet-upload.service")


def test_a_record_edited_on_the_collector_breaks_that_vms_chain_only(fleet):
    c = fleet["collector"]
    for unit in ("clawvisor-fleet-tls.service", "clawvisor-fleet-collector.service"):
        c.ok("systemctl", "stop", unit)  # the files closed, as an intruder would find them
    entries = [json.loads(x) for x in c.ok("journalctl", "-D", REMOTE_DIR, "-o", "json",
                                           "SYSLOG_IDENTIFIER=clawvisor").splitlines()]  # fmt: skip
    mine = {e["MESSAGE"] for e in entries if e["_HOSTNAME"] == "vm1"}
    files = sorted((c.root / REMOTE_DIR.lstrip("/")).glob("*.journal"))
    for e in entries:
        message = e["MESSAGE"]
        if e["_HOSTNAME"] != "vm2" or message in mine or not isinstance(message, str):
            continue
        needle = f"MESSAGE={message}".encode()
        for path in files:
            data = path.read_bytes()
            at = data.find(needle)
            if at >= 0:  # one letter changed, in place, as it is stored (not compressed)
                pos = at + len(needle) - 1
                path.write_bytes(data[:pos] + bytes([data[pos] ^ 0x20]) + data[pos + 1 :])
                break
        else:
            continue
        break
    else:
        pytest.fail("no uncompressed vm2 record to edit")
    lines = c.run(CLAWVISOR, "audit", "verify", "--journal-dir", REMOTE_DIR).stdout.splitlines()
    assert any(ln.startswith("vm2 chain") and "broken at seq" in ln for ln in lines), lines
    assert any(ln.startswith("vm1 chain") and ln.endswith(": intact") for ln in lines), lines
