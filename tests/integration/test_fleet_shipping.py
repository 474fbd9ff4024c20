"""The trail shipped for real: `clawvisor fleet certs` makes the fleet's CA and
certificates, `fleet collector --run` runs systemd-journal-remote on HTTPS requiring a
client certificate of that CA, and `fleet upload` runs systemd-journal-upload with the
VM's certificate on a journal directory holding a daemon's records. The records arrive
with their host, and verify intact there; a VM whose certificate another CA signed is
refused."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import rig
from tests.integration.test_fleet_verify import JOURNAL_REMOTE, collect, exported, fleet

pytestmark = pytest.mark.skipif(not JOURNAL_REMOTE.exists(), reason="systemd-journal-remote")
__all__ = ["fleet"]


def clawvisor(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(rig.CLAWVISOR), *argv], capture_output=True, text=True,
                          timeout=120, check=check)  # fmt: skip


free_port = rig.free_port


@pytest.fixture(scope="module")
def shipping(fleet, tmp_path_factory):
    _, chains, _ = fleet
    root = tmp_path_factory.mktemp("shipping")
    certs, rogue = root / "certs", root / "rogue"
    clawvisor("fleet", "certs", "--dir", str(certs), "--collector", "collector",
              "--address", "127.0.0.1", "--vm", "vm1")  # fmt: skip
    clawvisor("fleet", "certs", "--dir", str(rogue), "--vm", "vm1")  # another CA
    vm = root / "vm1-journal"
    vm.mkdir()
    collect(vm, "vm1", exported(chains[0], "vm1", "1" * 32))
    port, inner = free_port(), free_port()
    out = root / "collected"
    proc = subprocess.Popen(
        [str(rig.CLAWVISOR), "fleet", "collector", "--certs", str(certs), "--name", "collector",
         "--listen", f"127.0.0.1:{port}", "--inner", f"127.0.0.1:{inner}", "--output", str(out),
         "--run"],
        stdout=subprocess.DEVNULL, stderr=(root / "remote.stderr").open("w"),
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            assert proc.poll() is None, (root / "remote.stderr").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.1)
    yield root, certs, rogue, vm, out, f"https://127.0.0.1:{port}", chains[0]
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def collected(out: Path) -> str:
    done = clawvisor("audit", "verify", "--journal-dir", str(out), "--state-dir",
                     str(out.parent / "none"), check=False)  # fmt: skip
    return done.stdout


def test_a_vm_with_a_fleet_certificate_ships_its_trail_and_it_verifies_on_the_collector(
    shipping,
):
    root, certs, _, vm, out, url, chain = shipping
    up = clawvisor("fleet", "upload", "--url", url, "--certs", str(certs), "--vm", "vm1",
                   "--journal-dir", str(vm), "--state", str(root / "state"),
                   check=False)  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    deadline = time.monotonic() + 20
    while f"vm1 chain {chain}" not in (text := collected(out)):
        assert time.monotonic() < deadline, text
        time.sleep(0.3)
    assert any(ln.startswith(f"vm1 chain {chain}") and ln.endswith(": intact")
               for ln in text.splitlines()), text  # fmt: skip


def test_a_vm_whose_certificate_another_ca_signed_is_refused(shipping):
    root, _, rogue, vm, out, url, _ = shipping
    before = sorted(p.stat().st_size for p in out.glob("*.journal")) if out.exists() else []
    up = clawvisor("fleet", "upload", "--url", url, "--certs", str(rogue), "--vm", "vm1",
                   "--journal-dir", str(vm), "--state", str(root / "rogue-state"),
                   "--timeout", "15", check=False)  # fmt: skip
    assert up.returncode != 0
    after = sorted(p.stat().st_size for p in out.glob("*.journal")) if out.exists() else []
    assert after == before
