"""The trail gathered on a collector: two daemons' records, shipped in journald's export
format (what systemd-journal-upload sends) and written by a real systemd-journal-remote
into one collector directory, each VM keeping its `_HOSTNAME` and machine id. Then
`audit verify --journal-dir` checks every chain of every VM, and `audit log --host` reads
one VM's records."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import msgspec
import pytest

from supervisor.audit.chain import HEAD_FILE, Head
from tests.helpers import rig
from tests.helpers.rig import call
from tests.helpers.rules import rule

JOURNAL_REMOTE = Path("/lib/systemd/systemd-journal-remote")
pytestmark = pytest.mark.skipif(not JOURNAL_REMOTE.exists(), reason="systemd-journal-remote")


def chain_of(daemon: rig.Daemon) -> str:
    head = msgspec.json.decode((daemon.root / "state" / HEAD_FILE).read_bytes(), type=Head)
    return head.chain


def exported(chain: str, host: str, machine: str, edit: int | None = None) -> bytes:
    """The chain's records in journald's export format, as that VM would ship them (its
    host name and machine id); with `edit`, record seq `edit` altered on the way."""
    out = subprocess.run(
        rig.journalctl("-o", "export", "SYSLOG_IDENTIFIER=clawvisor", f"CLAWVISOR_CHAIN={chain}"),
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    entries = []
    for entry in out.split(b"\n\n"):
        if not entry.strip():
            continue
        lines = []
        seq = next((ln.split(b"=", 1)[1] for ln in entry.split(b"\n")
                    if ln.startswith(b"CLAWVISOR_SEQ=")), b"")  # fmt: skip
        for ln in entry.split(b"\n"):
            if ln.startswith(b"_HOSTNAME="):
                ln = b"_HOSTNAME=" + host.encode()
            elif ln.startswith(b"_MACHINE_ID="):
                ln = b"_MACHINE_ID=" + machine.encode()
            elif edit is not None and seq == str(edit).encode() and ln.startswith(b"MESSAGE="):
                ln = ln + b" (edited)"
            lines.append(ln)
        entries.append(b"\n".join(lines))
    return b"\n\n".join(entries) + b"\n\n"


def collect(directory: Path, host: str, export: bytes) -> None:
    """What systemd-journal-remote makes of one VM's upload on the collector."""
    src = directory.parent / f"{host}.export"
    src.write_bytes(export)
    output = directory / f"remote-{host}.journal"
    subprocess.run(
        [str(JOURNAL_REMOTE), "--split-mode=none", f"--output={output}", str(src)],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def fleet(make_user, make_daemon, journal, tmp_path_factory):
    daemons = []
    for _ in range(2):
        alpha = make_user()
        d = make_daemon({"alpha": alpha}, {"10.toml": rule("status")})
        for _ in range(3):
            assert call(d.intents, alpha, {"action": "status"}, f"f-{uuid.uuid4().hex[:6]}")
        daemons.append(d)
    chains = [chain_of(d) for d in daemons]
    for chain in chains:
        journal.wait_entries(4, CLAWVISOR_CHAIN=chain)
    return daemons, chains, tmp_path_factory


def collector(fleet, edit_vm2: int | None = None) -> Path:
    _, chains, factory = fleet
    root = factory.mktemp("collector")
    files = root / "files"
    files.mkdir()
    collect(files, "vm1", exported(chains[0], "vm1", "1" * 32))
    collect(files, "vm2", exported(chains[1], "vm2", "2" * 32, edit=edit_vm2))
    return files


def verify(files: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(rig.CLAWVISOR), "audit", "verify", "--journal-dir", str(files), "--state-dir",
         str(files.parent / "no-state"), *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_every_chain_of_every_vm_is_checked_and_intact(fleet):
    _, chains, _ = fleet
    out = verify(collector(fleet))
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(
        ln.startswith(f"vm1 chain {chains[0]}: ") and ln.endswith(": intact") for ln in lines
    )
    assert any(
        ln.startswith(f"vm2 chain {chains[1]}: ") and ln.endswith(": intact") for ln in lines
    )
    assert any(ln.startswith("vm1: newest record ") for ln in lines)


def test_a_record_edited_on_the_collector_breaks_that_vms_chain_only(fleet):
    _, chains, _ = fleet
    out = verify(collector(fleet, edit_vm2=2))
    assert out.returncode == 1, out.stdout
    lines = out.stdout.splitlines()
    assert any(ln.startswith(f"vm2 chain {chains[1]}") and ln.endswith("broken at seq 2")
               for ln in lines), lines  # fmt: skip
    assert any(ln.startswith(f"vm1 chain {chains[0]}") and ln.endswith(": intact") for ln in lines)


def test_a_vm_that_stopped_shipping_is_reported_stale(fleet):
    out = verify(collector(fleet), "--stale", "0.001")
    assert "STALE" in out.stdout


def test_the_json_verdict_has_one_object_per_vm_and_chain(fleet):
    out = verify(collector(fleet), "--json")
    objs = [json.loads(x) for x in out.stdout.splitlines()]
    chains = [o for o in objs if "chain" in o]
    assert {(o["host"], o["state"]) for o in chains} == {("vm1", "intact"), ("vm2", "intact")}
    assert {o["host"] for o in objs if "newest" in o and "chain" not in o} == {"vm1", "vm2"}


def test_audit_log_reads_one_vms_records_from_the_collector(fleet):
    _, chains, _ = fleet
    files = collector(fleet)
    out = subprocess.run(
        [str(rig.CLAWVISOR), "audit", "log", "--journal-dir", str(files), "--host", "vm1",
         "--chain", "all", "--format", "json", "--log-dir", str(files.parent / "no-log")],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    recs = [json.loads(x) for x in out.stdout.splitlines()]
    assert recs and {r["host"] for r in recs} == {"vm1"}
    assert {r["chain"] for r in recs} == {chains[0]}
