"""`clawvisor doctor` reports what the host offers, with fixes; a BPF monitor that cannot
load is a degraded state in `status` and in `doctor`, and the daemon serves on.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.helpers import rig
from tests.helpers.hide_dir import hiding
from tests.helpers.rules import rule

HEADERS = f"/lib/modules/{os.uname().release}"
POLICY = rule("status")
HOST_CHECKS = {
    "python",
    "module bcc",
    "module pyinotify",
    "kernel",
    "cgroup v2",
    "tracefs",
    "tracepoints",
    "kernel headers",
    "overlayfs",
    "nftables",
    "journald",
    "systemd",
    "d-bus",
}


def doctor(*args: str, wrapper: list[str] | None = None) -> tuple[int, dict[str, dict]]:
    proc = subprocess.run(
        [*(wrapper or []), str(rig.CLAWVISOR), "doctor", "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    checks = [json.loads(line) for line in proc.stdout.splitlines()]
    return proc.returncode, {c["name"]: c for c in checks}


def test_every_host_check_is_reported_and_every_problem_names_a_fix(tmp_path):
    _, checks = doctor("--no-bpf", "--socket", str(tmp_path / "none.sock"))
    assert set(checks) >= HOST_CHECKS
    for c in checks.values():
        assert c["state"] in ("ok", "warn", "fail", "skip")
        if c["state"] in ("warn", "fail"):
            assert c["fix"], c
    assert checks["daemon"]["state"] == "skip"


def test_the_bpf_check_loads_the_real_program(tmp_path):
    _, checks = doctor("--socket", str(tmp_path / "none.sock"))
    assert checks["bpf"]["state"] == "ok", checks["bpf"]


def test_journald_is_ok_when_it_listens(tmp_path, journal):
    _, checks = doctor("--no-bpf", "--socket", str(tmp_path / "none.sock"))
    assert checks["journald"]["state"] == "ok"


def test_missing_kernel_headers_fail_with_the_fix(tmp_path):
    code, checks = doctor("--socket", str(tmp_path / "none.sock"), wrapper=hiding(HEADERS))
    assert code == 1
    assert checks["kernel headers"]["state"] == "fail"
    assert "linux-headers" in checks["kernel headers"]["fix"]
    assert checks["bpf"]["state"] == "fail"
    assert "no kernel headers" in checks["bpf"]["detail"]


@pytest.fixture
def headless_daemon(make_user, make_daemon):
    """A daemon whose BPF program cannot compile: this kernel's headers are hidden from it."""
    return make_daemon(
        {"w": make_user()},
        {"10.toml": POLICY},
        "[monitors]\noverlay = false\ncounters = false\n",
        wrapper=hiding(HEADERS),
    )


def test_a_bpf_monitor_that_cannot_load_is_degraded_in_status(headless_daemon):
    with rig.connect_as(headless_daemon.control, None) as c:
        c.sendall(b'{"id":"s","op":"status"}\n')
        reply = rig.read_lines(c, 1)[0]
    [bpf] = [m for m in reply["result"]["monitors"] if m["name"] == "bpf"]
    assert bpf["state"] == "degraded"
    assert "no kernel headers" in bpf["detail"]
    assert headless_daemon.alive()


def test_a_bpf_monitor_that_cannot_load_is_a_failure_in_doctor(headless_daemon):
    code, checks = doctor("--no-bpf", "--socket", str(headless_daemon.control))
    assert code == 1
    assert checks["daemon"]["state"] == "ok"
    assert checks["monitor bpf"]["state"] == "fail"
    assert "no kernel headers" in checks["monitor bpf"]["detail"]
    assert checks["monitor bpf"]["fix"]


def test_doctor_shows_a_healthy_daemons_monitors(make_user, make_daemon):
    daemon = make_daemon(
        {"w": make_user()}, {"10.toml": POLICY}, "[monitors]\noverlay = false\ncounters = false\n"
    )
    _, checks = doctor("--no-bpf", "--socket", str(daemon.control))
    assert checks["monitor bpf"]["state"] == "ok"
    assert "tracepoints attached" in checks["monitor bpf"]["detail"]
    assert checks["monitor overlay"]["state"] == "skip"


def test_a_lowered_unprivileged_port_start_is_a_warning(tmp_path):
    # In a network namespace of its own (the sysctl is per namespace): the proxy's ports
    # are below 1024 so that no workload can bind them; 0 would let any.
    lowered = 'echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start; exec "$0" "$@"'
    _, checks = doctor(
        "--no-bpf", "--socket", str(tmp_path / "none.sock"),
        wrapper=["unshare", "--net", "sh", "-c", lowered],
    )  # fmt: skip
    check = checks["sysctl net.ipv4.ip_unprivileged_port_start"]
    assert check["state"] == "warn" and check["fix"]
    _, checks = doctor("--no-bpf", "--socket", str(tmp_path / "none.sock"),
                       wrapper=["unshare", "--net"])  # fmt: skip
    assert checks["sysctl net.ipv4.ip_unprivileged_port_start"]["state"] == "ok"
