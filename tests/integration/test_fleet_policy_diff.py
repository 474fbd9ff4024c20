"""Policy across the fleet: `clawvisor policy diff --socket vm1=PATH --socket vm2=PATH NEW`
compares a new policy with the policy each VM's daemon is running (its files as they were
loaded and its workloads with their tags), not with files on any disk."""

from __future__ import annotations

import json
import socket
import subprocess
import threading

import pytest

from tests.helpers import rig
from tests.helpers.rules import rule

BASE = rule("status", "alpha")
SEARCH = rule("search", "alpha")
TAGGED = rule("search", "@tag:ops")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(rig.CLAWVISOR), *argv], capture_output=True, text=True, timeout=60)


def sections(out: str) -> dict[str, str]:
    """The text of each VM's section, by VM name."""
    found: dict[str, str] = {}
    name = None
    for line in out.splitlines():
        if line.startswith("== "):
            name = line[3:].split(" ", 1)[0]
            found[name] = ""
        elif name is not None:
            found[name] += line + "\n"
    return found


@pytest.fixture
def new_policy(tmp_path):
    def write(text: str):
        new = tmp_path / "new.d"
        new.mkdir(exist_ok=True)
        (new / "10.toml").write_text(text)
        return new

    return write


def test_each_vm_is_compared_with_the_policy_it_runs(make_daemon, new_policy):
    vm1 = make_daemon({"alpha": None}, {"10.toml": BASE + SEARCH})
    vm2 = make_daemon({"alpha": None}, {"10.toml": BASE})
    new = new_policy(BASE + SEARCH)
    out = run(
        "policy",
        "diff",
        "--socket",
        f"vm1={vm1.control}",
        "--socket",
        f"vm2={vm2.control}",
        str(new),
    )
    assert out.returncode == 1, out.stdout + out.stderr
    got = sections(out.stdout)
    assert "nothing is newly allowed" in got["vm1"]
    assert "something is newly allowed" in got["vm2"]
    assert "alpha search" in got["vm2"] and "vm2 (in force)" in got["vm2"]
    assert "2 VMs: something newly allowed" in out.stdout


def test_the_files_on_a_vms_disk_do_not_stand_in_for_its_policy_in_force(make_daemon, new_policy):
    vm = make_daemon({"alpha": None}, {"10.toml": BASE})
    # Edited on the VM but not reloaded (or refused at reload): not what decides there.
    (vm.config_dir / "policy.d" / "10.toml").write_text(BASE + SEARCH)
    new = new_policy(BASE + SEARCH)
    on_disk = run("policy", "diff", "--config-dir", str(vm.config_dir), str(new))
    assert on_disk.returncode == 0, on_disk.stdout
    running = run("policy", "diff", "--socket", f"vm={vm.control}", str(new))
    assert running.returncode == 1, running.stdout + running.stderr
    assert "alpha search" in running.stdout


def test_the_new_policy_is_compiled_for_each_vms_own_workloads_and_tags(
    make_daemon, make_user, new_policy
):
    beta = make_user()
    tagged = make_daemon(
        {"alpha": None, "beta": beta}, {"10.toml": BASE}, workload_extra={"beta": 'tags = ["ops"]'}
    )
    untagged = make_daemon({"alpha": None, "beta": beta}, {"10.toml": BASE})
    new = new_policy(BASE + TAGGED)
    out = run(
        "policy",
        "diff",
        "--socket",
        f"ops={tagged.control}",
        "--socket",
        f"plain={untagged.control}",
        str(new),
    )
    got = sections(out.stdout)
    assert "beta search" in got["ops"] and "something is newly allowed" in got["ops"]
    assert "nothing is newly allowed" in got["plain"], out.stdout


def test_a_vm_that_cannot_be_reached_is_an_error_and_the_others_are_still_compared(
    make_daemon, new_policy, tmp_path
):
    vm = make_daemon({"alpha": None}, {"10.toml": BASE})
    new = new_policy(BASE)
    gone = tmp_path / "gone.sock"
    out = run(
        "policy", "diff", "--socket", f"gone={gone}", "--socket", f"vm={vm.control}", str(new)
    )
    assert out.returncode == 2, out.stdout
    got = sections(out.stdout)
    assert "error:" in got["gone"] and str(gone) in got["gone"]
    assert "nothing is newly allowed" in got["vm"]


def test_the_json_diff_is_one_object_per_vm_naming_it(make_daemon, new_policy, tmp_path):
    vm1 = make_daemon({"alpha": None}, {"10.toml": BASE + SEARCH})
    vm2 = make_daemon({"alpha": None}, {"10.toml": BASE})
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(f'[vms.vm1]\nsocket = "{vm1.control}"\n[vms.vm2]\nsocket = "{vm2.control}"\n')
    new = new_policy(BASE + SEARCH)
    out = run("policy", "diff", "--json", "--fleet", str(fleet), str(new))
    assert out.returncode == 1, out.stdout + out.stderr
    objects = [json.loads(line) for line in out.stdout.splitlines()]
    assert [o["vm"] for o in objects] == ["vm1", "vm2"]
    assert [o["newly_allowed"] for o in objects] == [False, True]


def test_reload_diff_compiles_the_policy_in_force_for_the_workloads_in_force(
    make_daemon, make_user
):
    daemon = make_daemon(
        {"alpha": None, "beta": make_user()},
        {"10.toml": BASE + TAGGED},
        workload_extra={"beta": 'tags = ["ops"]'},
    )
    # The tag is taken away on disk: the reload would stop beta's searches.
    workloads = daemon.config_dir / "workloads.toml"
    workloads.write_text(workloads.read_text().replace('tags = ["ops"]', ""))
    out = run(
        "reload", "--diff", "--socket", str(daemon.control), "--config-dir", str(daemon.config_dir)
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "beta search" in out.stdout and "narrower" in out.stdout


def test_runtime_dir_diffs_against_the_policy_this_boxs_daemon_runs(make_daemon, new_policy):
    daemon = make_daemon({"alpha": None}, {"10.toml": BASE})
    out = run(
        "policy",
        "diff",
        "--runtime-dir",
        str(daemon.control.parent),
        str(new_policy(BASE + SEARCH)),
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "daemon (in force)" in out.stdout and "alpha search" in out.stdout


def hostile_vm(path, result) -> threading.Thread:
    """A 'daemon' on `path` that answers one policy-source with `result`."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn, server:
            rid = json.loads(conn.makefile().readline())["id"]
            conn.sendall(json.dumps({"id": rid, "status": "ok", "result": result}).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    "result",
    [
        {"op": "policy-source", "files": [{"name": "10.toml", "text": BASE}]},
        {"op": "policy-source", "files": [{"name": "10.toml", "text": BASE}], "workloads": {}},
        None,
        ["not", "a", "source"],
        {"op": "policy-source", "files": "nope", "workloads": {"alpha": []}},
    ],
    ids=["no-workloads", "empty-workloads", "null", "list", "bad-files"],
)
def test_a_vm_that_does_not_say_exactly_what_it_runs_is_an_error_never_a_pass(
    make_daemon, new_policy, tmp_path, result
):
    # Compiled for no workload, any change would look like "nothing newly allowed".
    vm = make_daemon({"alpha": None}, {"10.toml": BASE})
    odd = tmp_path / "odd.sock"
    thread = hostile_vm(odd, result)
    new = new_policy(BASE + SEARCH)
    out = run("policy", "diff", "--socket", f"odd={odd}", "--socket", f"vm={vm.control}", str(new))
    thread.join(10)
    assert out.returncode == 2, out.stdout + out.stderr
    got = sections(out.stdout)
    assert got["odd"].startswith("error:"), out.stdout
    assert "something is newly allowed" in got["vm"]


def test_json_errors_are_objects_naming_their_vm(make_daemon, new_policy, tmp_path):
    vm = make_daemon({"alpha": None}, {"10.toml": BASE})
    gone = tmp_path / "gone.sock"
    out = run(
        "policy",
        "diff",
        "--json",
        "--socket",
        f"gone={gone}",
        "--socket",
        f"vm={vm.control}",
        str(new_policy(BASE)),
    )
    assert out.returncode == 2, out.stdout
    objects = [json.loads(line) for line in out.stdout.splitlines()]
    assert objects[0]["vm"] == "gone" and str(gone) in objects[0]["error"]
    assert objects[1]["vm"] == "vm" and objects[1]["newly_allowed"] is False
