"""Provision two workloads for real, check everything, verify it, weaken it, converge again.

Users, groups, directories, ACLs and an overlay on a tmpfs are made on this machine;
all network work happens in namespaces made by tests/helpers/netlab.py. Everything is
removed at the end (users, groups, mounts, namespaces, processes by pid) and the kernel
settings provisioning changes are put back.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import msgspec
import pytest

from supervisor.cli.output import json_outputs
from supervisor.posix_acl import XATTR
from tests.helpers import rig
from tests.helpers.netlab import ALLOWED, INTERNET, LAN_HOST, SERVICE_PORT, make_lab
from tests.helpers.rules import rule

KNOBS = ("kernel.io_uring_disabled", "kernel.unprivileged_bpf_disabled")


class Box:
    def __init__(self, root: Path, lab, tag: str):
        self.root, self.lab, self.tag = root, lab, tag
        self.etc, self.state, self.home = root / "etc", root / "state", root / "home"
        self.users = {"alpha": f"cvta{tag}", "beta": f"cvtb{tag}", "gamma": f"cvtg{tag}"}
        self.gw, self.ops = f"cvtgw{tag}", f"cvtops{tag}"
        self.daemon: subprocess.Popen[str] | None = None

    def cli(self, *argv: str, check_rc: int | None = 0) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            self.lab.exec(
                str(rig.CLAWVISOR),
                *argv,
                "--config-dir",
                str(self.etc),
                "--state-dir",
                str(self.state),
                "--runtime-dir",
                str(self.root / "run"),
            ),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check_rc is not None:
            assert out.returncode == check_rc, out.stdout + out.stderr
        return out

    def provision(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.cli("provision", *extra)

    def nft(self, *argv: str) -> str:
        return subprocess.run(
            self.lab.exec("nft", *argv), capture_output=True, text=True, check=True
        ).stdout

    def workloads(self, with_gamma: bool = False) -> str:
        text = f"""
[workloads.alpha]
user = "{self.users["alpha"]}"
internet = "allowlist"
egress_allow = ["{ALLOWED}:8080"]
overlay = {{ lower = "{self.root / "lower"}" }}
destination = "{self.root / "out-alpha"}"
tags = ["agents"]
inbound = [{{ port = {OPEN_PORT}, sources = ["{LAN_HOST}"] }}]

[workloads.beta]
user = "{self.users["beta"]}"
internet = "none"
host_services = ["{LAN_HOST}:{SERVICE_PORT}"]
"""
        if with_gamma:
            text += f'\n[workloads.gamma]\nuser = "{self.users["gamma"]}"\ninternet = "open"\n'
        return text

    def snapshot(self) -> dict[str, object]:
        """Users, groups, modes, ACLs, mounts and the ruleset, as they stand."""
        entries = {}
        for base in (self.home, self.state):
            for p in sorted([base, *base.rglob("*")]):
                try:
                    st = p.lstat()
                except FileNotFoundError:
                    continue
                try:
                    acl = os.getxattr(p, XATTR, follow_symlinks=False).hex()
                except OSError:
                    acl = None
                entries[str(p)] = (st.st_mode, st.st_uid, st.st_gid, acl)
        passwd = [ln for ln in Path("/etc/passwd").read_text().splitlines() if self.tag in ln]
        group = [ln for ln in Path("/etc/group").read_text().splitlines() if self.tag in ln]
        mounts = [
            ln for ln in Path("/proc/mounts").read_text().splitlines() if str(self.root) in ln
        ]
        table = (
            json.loads(self.nft("-j", "list", "table", "inet", "clawvisor") or "{}")
            if "clawvisor" in self.nft("list", "tables")
            else {}
        )
        for item in table.get("nftables", []):
            for kind in ("counter", "set"):
                if kind in item:
                    item[kind].pop("packets", None)
                    item[kind].pop("bytes", None)
                    for e in item[kind].get("elem", []):
                        if isinstance(e, dict) and "elem" in e:
                            e["elem"].pop("expires", None)
        return {
            "entries": entries,
            "passwd": passwd,
            "group": group,
            "mounts": mounts,
            "table": table,
        }


def unmount_all_under(root: Path) -> None:
    """Every mount under root (overlays, their idmapped lower views, the state tmpfs),
    deepest first; lazily when busy, so none outlives the test."""
    points = [
        ln.split()[4]
        for ln in Path("/proc/self/mountinfo").read_text().splitlines()
        if ln.split()[4].startswith(f"{root}/")
    ]
    for point in sorted(points, key=len, reverse=True):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)


@pytest.fixture(scope="module")
def box():
    tag = secrets.token_hex(2)
    root = rig.shared_tmpdir("clawvisor-prov-")
    saved = {k: Path("/proc/sys", *k.split(".")).read_text() for k in KNOBS}
    lab = make_lab()
    b = Box(root, lab, tag)
    stuck = False
    try:
        b.state.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(b.state)], check=True
        )
        (root / "lower").mkdir()
        (root / "lower" / "readme.txt").write_text("from the host\n")
        (b.etc / "policy.d").mkdir(parents=True)
        (b.etc / "policy.d" / "10.toml").write_text(
            rule("status") + "\n" + rule("sync-out", "alpha", "allow", "@self")
        )
        (b.etc / "clawvisor.toml").write_text(f"""
[server]
socket_group = "{b.gw}"
control_group = "{b.ops}"
[provision]
home_root = "{b.home}"
unit_dir = "{root / "units"}"
sysctl_file = "{root / "sysctl.d" / "60-clawvisor.conf"}"
dns = ["{LAN_HOST}"]
[verify]
lan_probe = "{LAN_HOST}:80"
internet_probe = "{INTERNET}:443"
""")
        (b.etc / "workloads.toml").write_text(b.workloads())
        # a gateway config file that exists before provisioning, with loose permissions
        (b.home / "alpha" / "config").mkdir(parents=True)
        (b.home / "alpha" / "config" / "gateway.json").write_text('{"tools": ["web"]}\n')
        (b.home / "alpha" / "config" / "gateway.json").chmod(0o666)
        b.first = b.provision()
        b.daemon = subprocess.Popen(
            lab.exec(
                str(rig.CLAWVISOR),
                "serve",
                "--config-dir",
                str(b.etc),
                "--runtime-dir",
                str(root / "run"),
                # The state provisioning made (overlays, firewall record), as installed.
                "--state-dir",
                str(b.state),
                "--log-dir",
                str(root / "log"),
            ),
            stdout=subprocess.DEVNULL,
            # A file, not a pipe nobody reads: a full pipe would block the daemon's writes.
            stderr=(root / "daemon.stderr").open("w"),
            text=True,
        )
        deadline = time.monotonic() + 20
        while not (root / "run" / "intents.sock").exists():
            assert time.monotonic() < deadline and b.daemon.poll() is None
            time.sleep(0.05)
        yield b
    finally:
        if b.daemon is not None:
            b.daemon.send_signal(signal.SIGTERM)
            try:
                b.daemon.wait(30)
            except subprocess.TimeoutExpired:  # cleaned up all the same, then failed
                b.daemon.kill()
                b.daemon.wait()
                stuck = True
        unmount_all_under(root)
        for user in b.users.values():
            subprocess.run(["userdel", user], capture_output=True)
            subprocess.run(["groupdel", user], capture_output=True)
        for group in (b.gw, b.ops):
            subprocess.run(["groupdel", group], capture_output=True)
        unmount_all_under(root)
        lab.close()
        for k, v in saved.items():
            Path("/proc/sys", *k.split(".")).write_text(v)
        rig.cleanup_root(root)
    if stuck:
        pytest.fail("the daemon did not stop within 30 s of SIGTERM")


def test_first_run_shows_the_plan_by_kind_and_applies_it(box):
    out = box.first.stdout
    for kind in ("users:", "dirs:", "overlay:", "firewall:", "sysctl:", "units:"):
        assert kind in out
    assert f"+ create group {box.gw}" in out
    assert f"+ create user {box.users['alpha']} for workload alpha" in out
    assert "skipped: systemd is not running" in out
    assert "changes applied" in out and "[1/" in out


def test_a_second_run_changes_nothing_and_says_so(box):
    before = box.snapshot()
    out = box.provision()
    assert "0 changes planned" in out.stdout
    assert "nothing to change" in out.stdout
    assert box.snapshot() == before


def test_users_are_system_users_without_password_in_the_gateway_group(box):
    for name in ("alpha", "beta"):
        user = box.users[name]
        passwd = next(
            ln for ln in Path("/etc/passwd").read_text().splitlines() if ln.startswith(f"{user}:")
        ).split(":")
        assert passwd[5] == str(box.home / name) and passwd[6] == "/usr/sbin/nologin"
        assert int(passwd[2]) < 1000  # a system user
        shadow = next(
            ln for ln in Path("/etc/shadow").read_text().splitlines() if ln.startswith(f"{user}:")
        )
        assert shadow.split(":")[1].startswith(("!", "*"))
        gw = next(
            ln for ln in Path("/etc/group").read_text().splitlines() if ln.startswith(f"{box.gw}:")
        )
        assert user in gw.split(":")[3].split(",")


def getfacl(path: Path) -> str:
    return subprocess.run(
        ["getfacl", "-n", "-p", str(path)], capture_output=True, text=True, check=True
    ).stdout


def test_homes_and_tiers_have_their_owners_modes_and_acls(box):
    uid = int(
        subprocess.run(["id", "-u", box.users["alpha"]], capture_output=True, text=True).stdout
    )
    home = box.home / "alpha"
    st = home.stat()
    assert (st.st_uid, oct(st.st_mode & 0o777)) == (0, "0o750")  # 0700 + ACL (mask r-x)
    assert f"user:{uid}:r-x" in getfacl(home) and "other::---" in getfacl(home)
    work = (home / "work").stat()
    assert work.st_uid == uid and oct(work.st_mode & 0o777) == "0o700"
    assert oct((home / "ops").stat().st_mode & 0o777) == "0o700" and "user:" not in getfacl(
        home / "ops"
    ).replace("user::", "")
    agent = getfacl(home / "agent")
    assert f"user:{uid}:r-x" in agent and f"default:user:{uid}:r-x" in agent
    cfg = home / "config" / "gateway.json"
    assert (cfg.stat().st_uid, oct(cfg.stat().st_mode & 0o777)) == (0, "0o640")
    assert f"user:{uid}:r--" in getfacl(cfg)


def test_overlay_shows_the_host_directory_and_keeps_writes_in_the_upper_layer(box):
    shared = box.home / "alpha" / "shared"
    mount = next(ln for ln in Path("/proc/mounts").read_text().splitlines() if f" {shared} " in ln)
    assert mount.startswith("overlay ") and "nosuid" in mount and "nodev" in mount
    user = box.users["alpha"]
    uid = int(subprocess.run(["id", "-u", user], capture_output=True, text=True).stdout)
    subprocess.run(
        ["/usr/bin/python3", "-c", f"open({str(shared / 'note.txt')!r}, 'w').write('hi')"],
        user=uid,
        check=True,
    )
    assert (shared / "readme.txt").read_text() == "from the host\n"
    assert (box.state / "overlay" / "alpha" / "upper" / "note.txt").read_text() == "hi"
    assert not (box.root / "lower" / "note.txt").exists()


def run_as(box, workload: str, code: str) -> subprocess.CompletedProcess[str]:
    uid = int(
        subprocess.run(["id", "-u", box.users[workload]], capture_output=True, text=True).stdout
    )
    return subprocess.run(
        ["/usr/bin/python3", "-c", code],
        user=uid,
        group=uid_gid(uid),
        capture_output=True,
        text=True,
    )


def uid_gid(uid: int) -> int:
    return pwd.getpwuid(uid).pw_gid


def test_the_workload_edits_a_root_owned_host_file_and_the_host_copy_is_untouched(box):
    shared = box.home / "alpha" / "shared"
    host = box.root / "lower" / "readme.txt"
    assert host.stat().st_uid == 0 and oct(host.stat().st_mode & 0o777) == "0o644"
    done = run_as(box, "alpha", f"open({str(shared / 'readme.txt')!r}, 'a').write('edited\\n')")
    assert done.returncode == 0, done.stderr
    assert (shared / "readme.txt").read_text() == "from the host\nedited\n"
    assert host.read_text() == "from the host\n"
    upper = box.state / "overlay" / "alpha" / "upper" / "readme.txt"
    assert upper.read_text() == "from the host\nedited\n"


def test_the_lower_view_is_idmapped_read_only_and_out_of_the_workloads_reach(box):
    view = box.state / "overlay" / "alpha" / "lower"
    line = next(
        ln
        for ln in Path("/proc/self/mountinfo").read_text().splitlines()
        if ln.split()[4] == str(view)
    )
    assert {"ro", "nosuid", "nodev", "idmapped"} <= set(line.split()[5].split(","))
    # Even root cannot write the host's files through it; the workload cannot reach it.
    with pytest.raises(OSError):
        (view / "readme.txt").open("a")
    denied = run_as(box, "alpha", f"open({str(view / 'readme.txt')!r}, 'a')")
    assert "Permission denied" in denied.stderr


def test_sync_out_carries_an_edit_of_a_host_file_back(box):
    shared = box.home / "alpha" / "shared"
    done = run_as(
        box, "alpha", f"open({str(shared / 'readme.txt')!r}, 'w').write('synced edit\\n')"
    )
    assert done.returncode == 0, done.stderr
    uid = int(
        subprocess.run(["id", "-u", box.users["alpha"]], capture_output=True, text=True).stdout
    )
    alpha = rig.User(box.users["alpha"], uid, uid_gid(uid))
    reply = rig.call(
        box.root / "run" / "intents.sock", alpha, {"action": "sync-out", "paths": ["readme.txt"]}
    )
    assert reply["status"] == "ok", reply
    assert (box.root / "out-alpha" / "readme.txt").read_text() == "synced edit\n"
    assert (box.root / "lower" / "readme.txt").read_text() == "from the host\n"


def test_the_ruleset_is_in_the_namespace_with_named_counters(box):
    listing = box.nft("list", "table", "inet", "clawvisor")
    for name in ("alpha", "beta"):
        assert f"chain wl_{name}" in listing
        for reason in ("drop_lan", "drop_meta", "accept", "drop"):
            assert f"counter {name}_{reason}" in listing
    # alpha (allowlist) may resolve; beta (internet = "none") has its DNS dropped, counted.
    assert 'counter name "alpha_resolver" accept' in listing
    assert 'counter name "alpha_drop_dns"' not in listing
    assert 'counter name "beta_drop_dns" drop' in listing
    assert 'counter name "beta_resolver"' not in listing
    assert "set staticp4_alpha" in listing and f"{ALLOWED} . 8080" in listing
    root_tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert "clawvisor" not in root_tables  # the root namespace is untouched


OPEN_PORT = 8081
LISTEN_AS = """
import socket, sys
s = socket.socket(); s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(4)
print("up", flush=True); s.settimeout(8)
try:
    s.accept()[0].close(); print("accepted", flush=True)
except TimeoutError:
    print("nobody", flush=True)
"""


def connect_from_the_lan(box, port: int) -> str:
    """A connection from the lab's LAN host to the workloads' address, as a stranger would."""
    code = (
        "import socket; s = socket.socket(); s.settimeout(2)\n"
        f"try: s.connect(('192.168.77.2', {port})); print('connected')\n"
        "except OSError as e: print(type(e).__name__)"
    )
    argv = ["nsenter", f"--net=/run/netns/{box.lab.hs}", "--", "/usr/bin/python3", "-c", code]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()


def listening(box, workload: str, port: int) -> subprocess.Popen[str]:
    uid = int(subprocess.run(["id", "-u", box.users[workload]], capture_output=True,
                             text=True).stdout)  # fmt: skip
    proc = subprocess.Popen(
        box.lab.exec("setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                     "/usr/bin/python3", "-c", LISTEN_AS, str(port)),
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    return proc


def counter(box, name: str) -> int:
    listing = json.loads(box.nft("-j", "list", "counter", "inet", "clawvisor", name))
    return next(i["counter"]["packets"] for i in listing["nftables"] if "counter" in i)


def test_a_lan_host_cannot_connect_to_a_workloads_listener(box):
    before = counter(box, "beta_drop_in")
    with listening(box, "beta", 9090) as srv:
        assert connect_from_the_lan(box, 9090) == "TimeoutError"
        srv.kill()
    assert counter(box, "beta_drop_in") > before


def test_a_port_inbound_opens_takes_connections_from_its_sources_only(box):
    with listening(box, "alpha", OPEN_PORT) as srv:
        assert connect_from_the_lan(box, OPEN_PORT) == "connected"
        assert srv.stdout is not None and srv.stdout.readline().strip() == "accepted"
    with listening(box, "alpha", OPEN_PORT + 1) as srv:
        assert connect_from_the_lan(box, OPEN_PORT + 1) == "TimeoutError"
        srv.kill()


def test_kernel_settings_are_applied_and_written(box):
    assert Path("/proc/sys/kernel/io_uring_disabled").read_text().strip() == "2"
    text = (box.root / "sysctl.d" / "60-clawvisor.conf").read_text()
    assert "kernel.io_uring_disabled = 2" in text
    assert "kernel.yama.ptrace_scope: this kernel does not have it" in box.first.stdout


def verify(box) -> dict[tuple[str, str], dict]:
    out = box.cli("verify", "--json", check_rc=None)
    rows = [json.loads(ln) for ln in out.stdout.splitlines() if ln.startswith("{")]
    # JSON Lines, each line the shape `clawvisor schema cli` declares for verify.
    shape = json_outputs()["verify"].type
    assert len(rows) == len(out.stdout.splitlines())
    for ln in out.stdout.splitlines():
        msgspec.json.decode(ln, type=shape, strict=True)
    return {(r["workload"], r["check"]): r for r in rows}


EXPECT_PASS = [
    "LAN address unreachable",
    "metadata address unreachable",
    "non-allowlisted internet unreachable",
    "own ops/ unlistable",
    "own ops/ unreadable",
    "config/ not writable",
    "config/ cannot be swapped",
    "control.sock refused",
    "inbound connection to its listener dropped",
    "agent/ script runs",
    "intents.sock answers",
]


def test_verify_passes_every_check_on_the_provisioned_box(box):
    rows = verify(box)
    failed = {k: v["reason"] for k, v in rows.items() if v["result"] == "FAIL"}
    assert not failed
    for check in EXPECT_PASS:
        assert rows[("alpha", check)]["result"] == "PASS", (check, rows[("alpha", check)])
    # A probe that cannot run is SKIP, never PASS: with no sudo there is nothing to refuse.
    sudo = rows[("alpha", "sudo -n true refused")]
    assert sudo["result"] == ("PASS" if shutil.which("sudo") else "SKIP"), sudo
    assert rows[("alpha", "root-owned config not writable")]["result"] == "PASS"
    assert rows[("alpha", "allowlisted destination reachable")]["result"] == "PASS"
    assert rows[("beta", "other workload's home (alpha) unreadable")]["result"] == "PASS"
    assert (
        "dropped by the firewall (beta_drop +"
        in rows[("beta", "non-allowlisted internet unreachable")]["reason"]
    )


def test_verify_shows_each_host_service_is_reachable(box):
    rows = verify(box)
    svc = rows[("beta", f"host service {LAN_HOST}:{SERVICE_PORT} reachable")]
    assert svc["result"] == "PASS" and "connected" in svc["reason"], svc


def test_verify_shows_a_workload_without_internet_cannot_query_the_resolvers(box):
    rows = verify(box)
    beta = rows[("beta", "DNS to the resolvers refused")]
    assert beta["result"] == "PASS" and "beta_drop_dns +" in beta["reason"], beta
    assert rows[("alpha", "DNS to the resolvers refused")]["result"] == "SKIP"


def weakened(box, break_it, *checks: str) -> None:
    """Break one thing: its checks FAIL, every other still PASSes; provision mends it."""
    break_it()
    rows = verify(box)
    failed = sorted(k for k, v in rows.items() if v["result"] == "FAIL")
    assert failed == sorted(("alpha", c) for c in checks), failed
    out = box.provision()
    assert re.search(r"\d+ changes? applied", out.stdout), out.stdout
    assert not [k for k, v in verify(box).items() if v["result"] == "FAIL"]


def test_opening_ops_to_the_workload_fails_exactly_that_check(box):
    ops = box.home / "alpha" / "ops"
    weakened(
        box,
        lambda: subprocess.run(
            ["setfacl", "-m", f"u:{box.users['alpha']}:rx", str(ops)], check=True
        ),
        "own ops/ unlistable",
        "own ops/ unreadable",
    )


def test_deleting_the_lan_drop_rule_fails_exactly_that_check(box):
    def delete_lan_rule() -> None:
        listing = box.nft("-a", "list", "chain", "inet", "clawvisor", "wl_alpha")
        handle = next(ln.rsplit("# handle ", 1)[1] for ln in listing.splitlines() if "@lan4" in ln)
        box.nft("delete", "rule", "inet", "clawvisor", "wl_alpha", "handle", handle)

    weakened(box, delete_lan_rule, "LAN address unreachable")
    assert "changed by hand" not in box.provision().stdout  # mended: nothing left to do


def test_a_writable_config_fails_exactly_that_check(box):
    cfg = box.home / "alpha" / "config" / "gateway.json"
    # (chmod 0666 alone would not do it: the workload's own ACL entry, r--, still applies)
    weakened(
        box,
        lambda: subprocess.run(["chown", box.users["alpha"], str(cfg)], check=True),
        "root-owned config not writable",
    )


def test_dry_run_changes_nothing(box):
    (box.home / "alpha" / "ops").chmod(0o755)
    before = box.snapshot()
    out = box.provision("--dry-run")
    assert "dry run: nothing was changed" in out.stdout and "ops: mode" in out.stdout
    assert box.snapshot() == before
    box.provision()


def test_live_allow_elements_survive_a_reprovision(box):
    box.nft("add", "element", "inet", "clawvisor", "allow4_alpha", "{ 198.51.100.99 timeout 1h }")
    (box.etc / "workloads.toml").write_text(
        box.workloads().replace(f'"{ALLOWED}:8080"]', f'"{ALLOWED}:8080", "198.51.100.0/28:443"]')
    )
    out = box.provision()
    assert "workloads.toml or the machine's subnets changed" in out.stdout
    listing = box.nft("list", "set", "inet", "clawvisor", "allow4_alpha")
    assert "198.51.100.99 timeout 1h expires" in listing
    (box.etc / "workloads.toml").write_text(box.workloads())
    box.provision()


def test_an_interrupted_run_converges(box):
    (box.etc / "workloads.toml").write_text(box.workloads(with_gamma=True))
    proc = subprocess.Popen(
        box.lab.exec(
            str(rig.CLAWVISOR),
            "provision",
            "--config-dir",
            str(box.etc),
            "--state-dir",
            str(box.state),
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    while "ok" not in proc.stdout.readline():  # let the first change complete...
        pass
    proc.kill()  # ...and kill it in the middle of the rest
    proc.wait()
    again = box.provision()
    assert re.search(r"\d+ changes? applied|nothing to change", again.stdout)
    assert "nothing to change" in box.provision().stdout
    assert (box.home / "gamma" / "work").is_dir()


def test_deprovision_ends_what_still_runs_as_the_workload(box):
    (box.etc / "workloads.toml").write_text(box.workloads(with_gamma=True))
    box.provision()
    uid = int(subprocess.run(["id", "-u", box.users["gamma"]], capture_output=True,
                             text=True).stdout)  # fmt: skip
    lingering = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}",
                                  "--clear-groups", "sleep", "300"])  # fmt: skip
    try:
        out = box.cli("deprovision", "gamma")
        assert f"delete user {box.users['gamma']} ... ok" in out.stdout, out.stdout
        assert lingering.wait(10) == -9  # killed by pid, as the user's last process
    finally:
        lingering.kill()
        lingering.wait()
    box.provision()  # gamma back, as the tests after this one expect it


def test_deprovision_ends_a_process_that_is_the_workload_only_by_its_effective_uid(box):
    # userdel counts the effective and saved uids too: one the real uid hid made it fail.
    (box.etc / "workloads.toml").write_text(box.workloads(with_gamma=True))
    box.provision()
    uid = int(subprocess.run(["id", "-u", box.users["gamma"]], capture_output=True,
                             text=True).stdout)  # fmt: skip
    hidden = subprocess.Popen(["setpriv", f"--euid={uid}", "sleep", "300"])
    try:
        out = box.cli("deprovision", "gamma", check_rc=None)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"delete user {box.users['gamma']} ... ok" in out.stdout, out.stdout
        assert hidden.wait(10) == -9
    finally:
        hidden.kill()
        hidden.wait()
    box.provision()  # gamma back, as the tests after this one expect it


def test_deprovision_removes_a_workload_and_keeps_data_unless_purged(box):
    (box.etc / "workloads.toml").write_text(box.workloads(with_gamma=True))
    out = box.cli("deprovision", "gamma")
    assert f"delete user {box.users['gamma']}" in out.stdout
    assert "kept" in out.stdout and (box.home / "gamma").exists()
    assert "wl_gamma" not in box.nft("list", "table", "inet", "clawvisor")
    assert subprocess.run(["id", box.users["gamma"]], capture_output=True).returncode != 0
    box.provision()
    out = box.cli("deprovision", "--purge", "gamma")
    assert not (box.home / "gamma").exists()
    (box.etc / "workloads.toml").write_text(box.workloads())
    assert "nothing to change" in box.provision().stdout


@pytest.mark.parametrize("command", [["verify"], ["deprovision", "w"]])
def test_verify_and_deprovision_refuse_a_missing_config_directory(command, tmp_path):
    out = subprocess.run(
        [str(rig.CLAWVISOR), *command, "--config-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "no config directory" in out.stderr


def test_a_second_deprovision_of_a_workload_whose_user_is_gone_still_succeeds(box):
    (box.etc / "workloads.toml").write_text(box.workloads(with_gamma=True))
    box.provision()
    first = box.cli("deprovision", "gamma", check_rc=None)
    second = box.cli("deprovision", "gamma", check_rc=None)
    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    assert "clawvisor deprovision: " in second.stdout and "already gone" in second.stdout
    assert "clawvisor provision:" not in second.stdout
    (box.etc / "workloads.toml").write_text(box.workloads())
    box.provision()


def test_deprovision_beside_a_listed_workload_whose_user_is_gone(box):
    """Another workload still listed with its user gone: its rules are built without a
    uid once (no RecursionError), and the one deprovisioned goes cleanly."""
    delta = f"cvtd{box.tag}"
    text = box.workloads(with_gamma=True) + f'\n[workloads.delta]\nuser = "{delta}"\n'
    (box.etc / "workloads.toml").write_text(text)
    try:
        box.provision()
        box.cli("deprovision", "gamma")  # gamma stays listed, its user gone
        out = box.cli("deprovision", "delta", check_rc=None)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "RecursionError" not in out.stderr
        assert "wl_delta" not in box.nft("list", "table", "inet", "clawvisor")
    finally:
        subprocess.run(["userdel", delta], capture_output=True)
        subprocess.run(["groupdel", delta], capture_output=True)
        (box.etc / "workloads.toml").write_text(box.workloads())
        box.provision()


def test_deprovision_while_the_workload_holds_live_egress_allows(box):
    (box.etc / "workloads.toml").write_text(box.workloads(with_gamma=True))
    box.provision()
    table = box.nft("list", "table", "inet", "clawvisor")
    [name] = [s for s in re.findall(r"set (allowp4_\w+)", table) if "gamma" in s]
    box.nft("add", "element", "inet", "clawvisor", name, "{ 192.0.2.7 . 443 timeout 1h }")
    out = box.cli("deprovision", "gamma", check_rc=None)
    assert out.returncode == 0, out.stdout + out.stderr
    after = box.nft("list", "table", "inet", "clawvisor")
    assert name not in after and "allowp4_" in after  # the others' sets stay
    (box.etc / "workloads.toml").write_text(box.workloads())
    box.provision()


def test_deprovisioning_the_last_workload_removes_the_table_and_the_gateway_group(box):
    """Runs last: it takes the box down to nothing."""
    box.cli("deprovision", "alpha")
    only_beta = box.workloads().split("[workloads.beta]", 1)[1]
    (box.etc / "workloads.toml").write_text("[workloads.beta]" + only_beta)
    out = box.cli("deprovision", "beta", check_rc=None)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "delete table inet clawvisor (no workload left)" in out.stdout
    assert "clawvisor" not in box.nft("list", "tables")
    assert subprocess.run(["getent", "group", box.gw], capture_output=True).returncode != 0
    assert not (box.state / "firewall.json").exists()
