"""Monitors a compromised agent cannot slip past (issue 20): each test is a real workload
user doing one thing against the real BPF programs, then the event's fields and the
trigger that fires.

One daemon for the module: workload W (the actor; its home under a shared temporary
root), workload B (another workload, whose secrets W must not read). Resolvers and
host_services are configured so that LAN connects to them are expected. Connects are
UDP (a UDP connect sends nothing), so nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from supervisor.cgroups import WorkloadCgroup, cgroup2_root, pids_of
from tests.helpers import rig
from tests.helpers.rules import rule
from tests.helpers.stream import Stream

POLICY = rule("status")

RESOLVER, SERVICE, LAN = "10.231.0.53", "10.231.0.80", "10.231.0.99"
TRIGGERS = """
[[exempt]]
trigger = "shred"
[exempt.match]
argv = { glob = "*/expected-scratch" }
"""


class Mon:
    """The daemon, its users and a collected `monitor` stream."""

    def __init__(self, daemon, w, b, stream, root, name):
        self.daemon, self.w, self.b, self.stream, self.root = daemon, w, b, stream, root
        self.name = name
        self.home = root / "home" / name

    def run(self, code: str, *args: str, env: dict[str, str] | None = None, cwd=None) -> int:
        """Python code as the workload user, in its home; its pid once it has exited."""
        proc = subprocess.Popen(
            ["/usr/bin/python3", "-S", "-c", textwrap.dedent(code), str(self.home), *args],
            cwd=str(cwd or self.home),
            env={"PATH": "/usr/bin:/bin", **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **rig.as_user(self.w),
        )
        proc.wait(60)
        return proc.pid

    def sh(self, script: str) -> int:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", script],
            cwd=str(self.home),
            env={"PATH": "/usr/bin:/bin", "HOME": str(self.home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **rig.as_user(self.w),
        )
        proc.wait(60)
        return proc.pid

    def event(self, kind: str, timeout: float = 10.0, of: int | None = None, **fields) -> dict:
        """The first event of `kind` with these fields (`of`: by this pid or its child)."""
        found = self.stream.find(
            lambda i: (
                i["kind"] == kind
                and not i.get("alert")
                and (of is None or of in (i.get("pid"), i.get("ppid")))
                and all(i.get(k) == v for k, v in fields.items())
            ),
            timeout=timeout,
        )
        assert found, f"no {kind} event with {fields}"
        return found[0]

    def alert(self, name: str, timeout: float = 10.0, of: int | None = None, **fields) -> dict:
        found = self.stream.find(
            lambda i: (
                i.get("alert") == name
                and (of is None or of in (i.get("pid"), i.get("ppid")))
                and all(i.get(k) == v for k, v in fields.items())
            ),
            timeout=timeout,
        )
        assert found, f"no alert {name} with {fields}"
        return found[0]

    def alerts_for(self, pid: int, wait: float = 1.5) -> set[str]:
        """The alerts raised by one process (after a moment for them to arrive)."""
        self.event("exit", pid=pid)
        self.stream.find(lambda i: False, timeout=wait)  # alerts follow their event
        with self.stream.lock:
            return {
                i["alert"]
                for i in self.stream.items
                if i.get("alert") and pid in (i.get("pid"), i.get("ppid"))
            }


@pytest.fixture(scope="module")
def mon(make_user, make_daemon):
    token = secrets.token_hex(2)
    name, other = f"w{token}", f"b{token}"
    root = rig.shared_tmpdir("clawvisor-depth-")
    homes = root / "home"
    w = make_user(home=str(homes / name))
    b = make_user(home=str(homes / other))
    for user, home in ((w, homes / name), (b, homes / other)):
        (home / ".ssh").mkdir(parents=True)
        for p in (home, home / ".ssh"):
            os.chown(p, user.uid, user.gid)
    (homes / other).chmod(0o700)
    aws = homes / other / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text("[default]\naws_secret_access_key = x\n")
    os.chown(aws, b.uid, b.gid)
    os.chown(aws / "credentials", b.uid, b.gid)
    # A setuid-root interpreter: the way a process of the workload becomes root.
    (root / "sbin").mkdir()
    suid = root / "sbin" / "pyroot"
    shutil.copy(os.path.realpath("/usr/bin/python3"), suid)
    suid.chmod(0o4755)
    # The workload's cgroup exists before the daemon starts (it watches it by id).
    cgroup = WorkloadCgroup(name, cgroup2_root())
    cgroup.ensure()

    def prepare(daemon_root: Path) -> None:
        (daemon_root / "etc" / "triggers.d").mkdir()
        (daemon_root / "etc" / "triggers.d" / "50-test.toml").write_text(TRIGGERS)

    settings = f"""
[server]
socket_group = "cvt-no-such-group"
[provision]
home_root = "{homes}"
dns = ["{RESOLVER}"]
[monitors]
overlay = false
counters = false
"""
    daemon = make_daemon(
        {name: w, other: b},
        {"10.toml": POLICY},
        settings,
        workload_extra={name: f'host_services = ["{SERVICE}:11434"]'},
        prepare=prepare,
    )
    stream = Stream(daemon.control)
    m = Mon(daemon, w, b, stream, root, name)
    yield m
    stream.sock.close()
    for uid in (w.uid, b.uid):
        for pid in pids_of(uid):
            os.kill(pid, signal.SIGKILL)
    for pid in cgroup.members():
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        cgroup.path.rmdir()
    rig.cleanup_root(root)


def status(mon: Mon) -> dict[str, dict]:
    with rig.connect_as(mon.daemon.control, None) as c:
        c.sendall(b'{"id":"s","op":"status"}\n')
        reply = rig.read_lines(c, 1)[0]
    return {m["name"]: m for m in reply["result"]["monitors"]}


LIBC = "import ctypes, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\nhome = sys.argv[1]\n"


# --- §1: evasion holes -------------------------------------------------------------------


def test_open_2_writing_bashrc_is_seen_and_alerted(mon):
    pid = mon.run(LIBC + "libc.syscall(2, (home + '/.bashrc').encode(), 0o1101, 0o644)\n")
    e = mon.event("open", pid=pid, path=f"{mon.home}/.bashrc")
    assert e["write"] and e["result"] >= 0
    mon.alert("persistence-write", pid=pid)


def test_creat_writing_zshrc_is_seen_and_alerted(mon):
    pid = mon.run(LIBC + "libc.syscall(85, (home + '/.zshrc').encode(), 0o644)\n")
    e = mon.event("open", pid=pid, path=f"{mon.home}/.zshrc")
    assert e["create"] and e["write"]
    mon.alert("persistence-write", pid=pid)


def test_openat2_writing_profile_is_seen_and_alerted(mon):
    code = LIBC + (
        "how = (ctypes.c_uint64 * 3)(0o1101, 0o644, 0)\n"
        "libc.syscall(437, -100, (home + '/.profile').encode(), ctypes.byref(how), 24)\n"
    )
    pid = mon.run(code)
    mon.event("open", pid=pid, path=f"{mon.home}/.profile")
    mon.alert("persistence-write", pid=pid)


def test_a_write_relative_to_a_dirfd_is_reported_at_its_real_path(mon):
    code = """
    import os, sys
    d = os.open(sys.argv[1] + "/.ssh", os.O_RDONLY | os.O_DIRECTORY)
    os.chdir("/tmp")
    os.close(os.open("authorized_keys", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=d))
    """
    pid = mon.run(code)
    mon.event("open", pid=pid, path=f"{mon.home}/.ssh/authorized_keys")
    mon.alert("persistence-write", pid=pid, path=f"{mon.home}/.ssh/authorized_keys")


def test_a_relative_write_after_chdir_is_resolved_against_the_new_cwd(mon):
    # The process is gone before the event is decoded: /proc cannot tell its cwd.
    code = """
    import os, sys
    os.chdir(sys.argv[1] + "/.ssh")
    open("config", "w").close()
    """
    pid = mon.run(code, cwd="/tmp")
    mon.event("open", pid=pid, path=f"{mon.home}/.ssh/config")


FIRST_SEEN = """
import os, sys
base, uid, gid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for i in range(n):
    pid = os.fork()
    if pid == 0:
        os.chdir(f"{base}/d{i}")  # as root: unwatched, so never a chdir event
        os.setgid(gid)
        os.setuid(uid)
        os.close(os.open("first-seen", os.O_WRONLY | os.O_CREAT, 0o600))
        os._exit(0)  # gone, its cwd with it, before its events are decoded
    print(pid, flush=True)
    os.waitpid(pid, 0)
"""


def test_a_first_seen_process_that_exits_at_once_has_its_relative_write_resolved(mon):
    # Its first watched syscall is the write; /proc has nothing left to say by the time
    # it is decoded. The kernel's walk of its cwd says where it was.
    base = mon.home / "first-seen"
    n = 20
    for i in range(n):
        (base / f"d{i}").mkdir(parents=True)
        os.chown(base / f"d{i}", mon.w.uid, mon.w.gid)
    out = subprocess.run(
        ["/usr/bin/python3", "-S", "-c", FIRST_SEEN, str(base), str(mon.w.uid),
         str(mon.w.gid), str(n)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    pids = [int(x) for x in out.stdout.split()]
    for i, pid in enumerate(pids):
        event = mon.event("open", pid=pid)
        assert (event["path"], event.get("resolved", True)) == (f"{base}/d{i}/first-seen", True)


def test_a_relative_read_of_another_workloads_secret_is_seen_refused_and_alerted(mon):
    other = mon.root / "home" / f"b{mon.name[1:]}"
    pid = mon.run("open('../" + other.name + "/.aws/credentials').read()\n")
    e = mon.event("open", pid=pid, path=f"{other}/.aws/credentials")
    assert e["other_home"] == other.name
    assert e["error"] == "EACCES" and e["result"] == -13
    mon.alert("other-workload-home", pid=pid)


def test_a_record_a_decoder_fails_on_costs_no_other_record(mon):
    # "/proc/self/fd/²": "²".isdigit() is true and int("²") raises. The decoder's error
    # took the rest of its batch with it, uncounted: a poison exec every few syscalls
    # hid nearly all of them.
    code = """
    import os, sys
    for i in range(40):
        try:
            os.execv("/proc/self/fd/\u00b2", ["x"])
        except OSError:
            pass
        for j in range(5):
            os.close(os.open(f"{sys.argv[1]}/poison-{i}-{j}", os.O_WRONLY | os.O_CREAT))
    """
    pid = mon.run(code)
    mon.event("exit", pid=pid)
    with mon.stream.lock:
        seen = {i["path"] for i in mon.stream.items
                if i["kind"] == "open" and i.get("pid") == pid and not i.get("alert")}  # fmt: skip
    assert seen >= {f"{mon.home}/poison-{i}-{j}" for i in range(40) for j in range(5)}
    mon.event("exec", pid=pid, filename="/proc/self/fd/\u00b2")


# open(path, O_WRONLY | O_CREAT, 0600) through int 0x80, from code and a path placed
# below 4 GiB (MAP_32BIT): i386 syscall 5, arguments in ebx, ecx, edx.
INT80_OPEN = (
    LIBC
    + """
import struct
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
page = libc.mmap(None, 4096, 7, 0x22 | 0x40, -1, 0)  # rwx, private|anonymous|32bit
path = (home + "/.bash_logout").encode() + b"\\0"
ctypes.memmove(page + 256, path, len(path))
code = (b"\\x53"                                       # push rbx
        + b"\\xb8" + struct.pack("<I", 5)              # mov eax, 5 (open)
        + b"\\xbb" + struct.pack("<I", page + 256)      # mov ebx, path
        + b"\\xb9" + struct.pack("<I", 0o101)          # mov ecx, O_WRONLY|O_CREAT
        + b"\\xba" + struct.pack("<I", 0o600)          # mov edx, 0600
        + b"\\xcd\\x80"                                   # int 0x80
        + b"\\x5b\\xc3")                                  # pop rbx; ret
ctypes.memmove(page, code, len(code))
sys.exit(0 if ctypes.CFUNCTYPE(ctypes.c_int)(page)() >= 0 else 1)
"""
)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="int 0x80 is x86's")
def test_a_32_bit_syscall_is_seen_and_alerted(mon):
    # The per-syscall tracepoints skip every 32-bit syscall: this open of .bash_logout
    # was no event at all.
    pid = mon.run(INT80_OPEN)
    assert (Path(mon.home) / ".bash_logout").exists()
    e = mon.event("compat", pid=pid)
    assert e["number"] == 5 and e["workload"] == mon.name
    mon.alert("compat-syscall", pid=pid)


def test_a_path_in_a_page_not_yet_faulted_in_is_read_at_exit(mon):
    code = """
    import mmap
    src = home + "/path-page"
    with open(src, "wb") as f:
        f.write((home + "/.bash_login").encode() + b"\\0")
    fd = os.open(src, os.O_RDONLY)
    m = mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))   # the page is not touched
    libc.open(ctypes.c_void_p(addr), os.O_WRONLY | os.O_CREAT, 0o644)
    """
    pid = mon.run(LIBC + textwrap.dedent(code))
    mon.event("open", pid=pid, path=f"{mon.home}/.bash_login")
    mon.alert("persistence-write", pid=pid, path=f"{mon.home}/.bash_login")


def test_a_process_that_became_root_stays_watched(mon):
    code = """
    import os, sys
    os.setuid(0)
    open(sys.argv[1] + "/.bash_profile", "a").write("x")
    """
    proc = subprocess.Popen(
        [str(mon.root / "sbin" / "pyroot"), "-S", "-c", textwrap.dedent(code), str(mon.home)],
        env={"PATH": "/usr/bin:/bin"},
        **rig.as_user(mon.w),
    )
    proc.wait(30)
    e = mon.event("open", pid=proc.pid, path=f"{mon.home}/.bash_profile")
    assert e["uid"] == 0 and e["workload"] == mon.name
    s = mon.event("setuid", pid=proc.pid)
    assert s["ids"] == [0] and s["gain"] and s["result"] == 0
    mon.alert("setuid-attempt", pid=proc.pid)
    mon.alert("persistence-write", pid=proc.pid, uid=0)


def test_a_root_process_in_the_workloads_cgroup_is_watched(mon):
    target = mon.root / "cgroup-made"
    gate = subprocess.Popen(
        [sys.executable, "-c", f"import sys; sys.stdin.read(1); open({str(target)!r}, 'w')"],
        stdin=subprocess.PIPE,
    )
    try:
        (WorkloadCgroup(mon.name, cgroup2_root()).path / "cgroup.procs").write_text(str(gate.pid))
        gate.stdin.write(b"x")
        gate.stdin.close()
        gate.wait(30)
    finally:
        if gate.poll() is None:
            gate.kill()
    e = mon.event("open", pid=gate.pid, path=str(target))
    assert e["uid"] == 0 and e["workload"] == mon.name


def test_a_module_load_is_caught_through_raw_syscalls_where_its_tracepoint_is_missing(mon):
    pid = mon.run(LIBC + "fd = os.open('/dev/null', os.O_RDONLY)\nlibc.syscall(313, fd, b'', 0)\n")
    e = mon.event("module", pid=pid)
    # Refused either way: no permission, or (this kernel) no module support at all.
    assert e["call"] == "finit_module" and e["error"] in ("EPERM", "ENOSYS")
    mon.alert("module-load", pid=pid)
    bpf = status(mon)["bpf"]
    assert "raw_syscalls" in bpf["detail"] and "finit_module" in bpf["detail"]


# --- §2: outcomes ----------------------------------------------------------------------------


def test_a_failed_path_lookup_is_an_exec_with_its_error_and_no_alert(mon):
    code = (
        "import os\nos.execvpe('sh', ['sh', '-c', 'exit 0'], {'PATH': '/nonexistent/bin:/bin'})\n"
    )
    pid = mon.run(code)
    failed = mon.event("exec", pid=pid, filename="/nonexistent/bin/sh")
    assert failed["error"] == "ENOENT" and failed["result"] == -2
    mon.event("exec", pid=pid, filename="/bin/sh", result=0)
    with mon.stream.lock:
        alerted = [
            i
            for i in mon.stream.items
            if i.get("alert") and i.get("filename") == "/nonexistent/bin/sh"
        ]
    assert alerted == []
    mon.alert("shell-or-network-tool", pid=pid, filename="/bin/sh")


def test_a_refused_read_of_etc_shadow_is_seen_and_alerted(mon):
    pid = mon.run("open('/etc/shadow').read()\n")
    e = mon.event("open", pid=pid, path="/etc/shadow")
    assert e["error"] == "EACCES" and not e["write"]
    mon.alert("system-secret-refused", pid=pid)


def test_a_refused_write_is_an_attempt_with_its_error(mon):
    pid = mon.run("open('/etc/cron.d/probe', 'w')\n")
    e = mon.event("open", pid=pid, path="/etc/cron.d/probe")
    assert e["error"] == "EACCES"
    assert mon.alert("persistence-write", pid=pid)["error"] == "EACCES"


# --- §3: new event classes ------------------------------------------------------------------


def test_chmod_setting_the_setuid_bit_is_alerted(mon):
    pid = mon.run("import os, sys\nopen('suidme', 'w').close()\nos.chmod('suidme', 0o4755)\n")
    e = mon.event("chmod", pid=pid, path=f"{mon.home}/suidme")
    assert e["setid"] and e["mode"] == 0o4755 and e["dropped"]
    mon.alert("setid-bit", pid=pid)


def test_chmodding_a_directory_twice_is_not_a_dropped_file_made_executable(mon):
    pid = mon.run("import os\nos.mkdir('d')\nos.chmod('d', 0o700)\nos.chmod('d', 0o700)\n")
    chmods = mon.stream.find(
        lambda i: i["kind"] == "chmod" and i.get("pid") == pid and not i.get("alert"), count=2
    )
    assert len(chmods) == 2 and all(e["exec"] and not e.get("dropped") for e in chmods)
    assert "dropped-made-executable" not in mon.alerts_for(pid)


def test_chown_is_seen(mon):
    pid = mon.run(f"import os\nopen('mine', 'w').close()\nos.chown('mine', {mon.w.uid}, -1)\n")
    e = mon.event("chown", pid=pid, path=f"{mon.home}/mine")
    assert e["owner"] == mon.w.uid and e["group"] == -1


def test_deleting_shell_history_is_alerted(mon):
    pid = mon.run("import os\nopen('.bash_history', 'w').close()\nos.unlink('.bash_history')\n")
    mon.event("unlink", pid=pid, path=f"{mon.home}/.bash_history")
    mon.alert("log-deleted", pid=pid)


def test_renaming_a_file_into_bashrc_is_alerted(mon):
    pid = mon.run("import os\nopen('staged', 'w').close()\nos.rename('staged', '.bashrc')\n")
    e = mon.event("rename", pid=pid, new=f"{mon.home}/.bashrc")
    assert e["old"] == f"{mon.home}/staged"
    mon.alert("persistence-rename", pid=pid)


def test_linking_history_to_dev_null_is_alerted(mon):
    code = "import os\nos.symlink('/dev/null', '.zsh_history')\nos.unlink('.zsh_history')\n"
    pid = mon.run(code)
    e = mon.event("symlink", pid=pid, path=f"{mon.home}/.zsh_history")
    assert e["target"] == "/dev/null"
    mon.alert("history-linked-away", pid=pid)


def test_a_symlink_to_etc_shadow_is_alerted(mon):
    pid = mon.run("import os\nos.symlink('/etc/shadow', 'sh4dow')\n")
    mon.event("symlink", pid=pid, target="/etc/shadow")
    mon.alert("symlink-to-secret", pid=pid)


def test_a_hard_link_to_a_file_of_another_user_is_refused_and_alerted(mon):
    pid = mon.run("import os\ntry:\n    os.link('/etc/shadow', 'hl')\nexcept OSError:\n    pass\n")
    e = mon.event("link", pid=pid, target="/etc/shadow")
    assert e["error"] == "EPERM"
    mon.alert("symlink-to-secret", pid=pid)


def test_a_listener_on_all_addresses_is_seen_with_its_port_and_alerted(mon):
    code = "import socket\ns = socket.socket()\ns.bind(('0.0.0.0', 0))\ns.listen(1)\n"
    pid = mon.run(code)
    b = mon.event("bind", pid=pid)
    assert (b["family"], b["addr"]) == ("inet", "0.0.0.0")
    listen = mon.event("listen", pid=pid)
    assert listen["addr"] == "0.0.0.0"
    mon.alert("listener", pid=pid)


def test_a_packet_socket_is_refused_and_alerted(mon):
    code = "import socket\ntry:\n    socket.socket(17, socket.SOCK_RAW, 0)\n"
    code += "except OSError:\n    pass\n"
    pid = mon.run(code)
    e = mon.event("socket", pid=pid, family="packet")
    assert e["raw"] and e["error"] == "EPERM"
    mon.alert("raw-socket", pid=pid)


def test_renaming_itself_like_a_kernel_thread_is_alerted(mon):
    pid = mon.run(LIBC + "libc.prctl(15, b'kworker/0:1', 0, 0, 0)\n")
    e = mon.event("comm", pid=pid, new="kworker/0:1")
    assert e["old"] == "python3"
    mon.alert("masquerade", pid=pid)


def test_setting_explicit_file_times_is_alerted(mon):
    pid = mon.run("import os\nopen('old', 'w').close()\nos.utime('old', (1e9, 1e9))\n")
    e = mon.event("utimes", pid=pid, path=f"{mon.home}/old")
    assert e["explicit"] and e["mtime"] == 1_000_000_000
    mon.alert("timestomp", pid=pid)


def test_touch_is_not_timestomping(mon):
    pid = mon.sh("touch fresh")
    e = mon.event("utimes", of=pid)
    assert not e.get("explicit")
    assert "timestomp" not in mon.alerts_for(pid)


def test_a_memfd_executed_is_fileless(mon):
    code = """
    import os
    fd = os.memfd_create("payload", 0)
    os.write(fd, open("/bin/true", "rb").read())
    os.execve(fd, ["payload"], {})
    """
    pid = mon.run(code)
    mon.event("memfd", pid=pid, name="payload")
    e = mon.alert("fileless-exec", pid=pid)
    assert e["filename"] == "/memfd:payload"


def test_a_socket_duplicated_onto_stdin_is_a_reverse_shell(mon):
    code = "import os, socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    code += "s.connect(('127.0.0.1', 9))\nos.dup2(s.fileno(), 0)\n"
    pid = mon.run(code)
    e = mon.event("dup", pid=pid, newfd=0)
    assert e["socket"]
    mon.alert("reverse-shell", pid=pid)


def test_setgroups_to_groups_it_does_not_have_is_a_gain(mon):
    pid = mon.run("import os\ntry:\n    os.setgroups([0])\nexcept OSError:\n    pass\n")
    e = mon.event("setuid", pid=pid, call="setgroups")
    assert e["ids"] == [0] and e["gain"] and e["error"] == "EPERM"
    mon.alert("setuid-attempt", pid=pid)


def test_setregid_and_setfsuid_to_root_are_gains(mon):
    code = LIBC + "libc.setregid(0, 0)\nlibc.setfsuid(0)\n"
    pid = mon.run(code)
    assert mon.event("setuid", pid=pid, call="setregid")["gain"]
    assert mon.event("setuid", pid=pid, call="setfsuid")["gain"]


def test_an_exec_with_ld_preload_is_alerted_with_its_environment(mon):
    pid = mon.sh("LD_PRELOAD=/tmp/evil.so HISTFILE=/dev/null https_proxy=http://x:1 /bin/true")
    e = mon.alert("preload-env", of=pid, filename="/bin/true")
    assert "LD_PRELOAD=/tmp/evil.so" in e["env"]
    assert "HISTFILE=/dev/null" in e["env"] and "https_proxy=http://x:1" in e["env"]
    mon.alert("history-disabled", of=pid)
    mon.alert("proxy-env", of=pid)


# --- §4: provenance --------------------------------------------------------------------------


def test_a_binary_copied_to_tmp_and_run_is_dropped_and_names_its_writer(mon):
    d = mon.root / f"drop-{secrets.token_hex(2)}"
    d.mkdir()
    os.chown(d, mon.w.uid, mon.w.gid)
    code = f"""
    import os, shutil, subprocess
    shutil.copy("/bin/true", "{d}/tool")
    os.chmod("{d}/tool", 0o755)
    subprocess.run(["{d}/tool"])
    """
    pid = mon.run(code)
    e = mon.event("exec", filename=f"{d}/tool", result=0)
    assert e["dropped"] and f"pid {pid}" in e["dropped_by"]
    assert e["dropped_by"].endswith(", write)")  # its writer, not the chmod +x after it
    mon.alert("dropped-and-executed", filename=f"{d}/tool")


def test_a_decoder_piped_into_a_shell_is_one_event(mon):
    pid = mon.sh("echo ZXhpdCAwCg== | base64 -d | sh")
    e = mon.alert("pipe-to-shell", of=pid)
    assert e["feeder"].endswith("/base64") and e["shell"].endswith("/sh")
    assert e["feeder_argv"] == ["base64", "-d"]


# --- §5: false alarms and narrow exemptions ---------------------------------------------------


def test_dropping_to_its_own_ids_is_not_a_setuid_alert(mon):
    code = LIBC + (
        f"libc.setresuid(-1, {mon.w.uid}, -1)\nos.setgid(os.getgid())\n"
        f"libc.setresgid({mon.w.gid}, {mon.w.gid}, {mon.w.gid})\n"
    )
    pid = mon.run(code)
    calls = {mon.event("setuid", pid=pid, call=c).get("gain") for c in ("setresuid", "setgid")}
    assert calls == {None}  # gain: false, left out
    assert "setuid-attempt" not in mon.alerts_for(pid)


def test_a_capset_that_only_lowers_is_not_an_alert(mon):
    code = LIBC + (
        "hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)\ndata = (ctypes.c_uint32 * 6)()\n"
        "assert libc.capset(hdr, data) == 0\n"
    )
    pid = mon.run(code)
    e = mon.event("capset", pid=pid)
    assert e["result"] == 0 and not e.get("gain")
    assert "setuid-attempt" not in mon.alerts_for(pid)


def test_a_capset_that_tries_to_raise_is_a_gain(mon):
    code = LIBC + (
        "hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)\n"
        "data = (ctypes.c_uint32 * 6)(1 << 21, 1 << 21, 0, 0, 0, 0)\nlibc.capset(hdr, data)\n"
    )
    pid = mon.run(code)
    e = mon.event("capset", pid=pid)
    assert e["gain"] and e["error"] == "EPERM" and e["permitted"] == 1 << 21
    mon.alert("setuid-attempt", pid=pid)


def udp_connect(host: str, port: int) -> str:
    return (
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"s.connect(({host!r}, {port}))\n"
    )


def test_dns_to_the_configured_resolver_is_not_lan(mon):
    pid = mon.run(udp_connect(RESOLVER, 53))
    assert mon.event("connect", pid=pid, addr=RESOLVER)["service"] == "dns"
    assert "lan-connect" not in mon.alerts_for(pid)


def test_the_workloads_host_service_is_not_lan(mon):
    pid = mon.run(udp_connect(SERVICE, 11434))
    assert mon.event("connect", pid=pid, addr=SERVICE)["service"] == "host-service"
    assert "lan-connect" not in mon.alerts_for(pid)


def test_another_lan_address_is_still_lan(mon):
    pid = mon.run(udp_connect(LAN, 11434))
    mon.alert("lan-connect", pid=pid, addr=LAN)


def test_an_exemption_covers_only_what_it_names(mon):
    scratch = mon.home / "expected-scratch"
    other = mon.home / "evidence"
    expected = mon.sh(f"echo x > {scratch} && shred {scratch}")
    mon.event("exec", of=expected, filename="/usr/bin/shred")
    unexpected = mon.sh(f"echo x > {other} && shred {other}")
    mon.alert("shred", of=unexpected)
    with mon.stream.lock:
        assert not [
            i
            for i in mon.stream.items
            if i.get("alert") == "shred" and expected in (i["pid"], i.get("ppid"))
        ]


# --- §6: the kept event log ------------------------------------------------------------------


def test_the_kept_log_has_every_event_as_json_and_cef(mon):
    pid = mon.sh("/bin/true keep-me")
    mon.event("exec", of=pid, filename="/bin/true")
    base = [
        str(rig.CLAWVISOR),
        "monitor",
        "--since",
        "1h",
        "--log-dir",
        str(mon.daemon.root / "log"),
    ]
    import json
    import time

    deadline = time.monotonic() + 10
    while True:  # the writer flushes every 0.2 s
        out = subprocess.run([*base, "--format", "json"], capture_output=True, text=True)
        lines = [json.loads(x) for x in out.stdout.splitlines()]
        mine = [x for x in lines if x.get("argv") == ["/bin/true", "keep-me"]]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert mine and mine[0]["kind"] == "exec" and mine[0]["workload"] == mon.name
    assert any(x["kind"] == "fork" for x in lines)  # not only alerts
    cef = subprocess.run(
        [*base, "--format", "cef", "--kind", "exec"], capture_output=True, text=True
    )
    line = next(x for x in cef.stdout.splitlines() if "filePath=/bin/true" in x and "|exec|" in x)
    assert line.startswith("CEF:0|clawvisor|clawvisor|1|exec|")
    assert "filePath=/bin/true" in line


def test_a_short_lived_file_in_a_new_directory_is_seen(mon):
    code = """
    import os
    os.mkdir("fleeting")
    open("fleeting/a", "w").close()
    os.rename("fleeting/a", "fleeting/b")
    os.unlink("fleeting/b")
    os.rmdir("fleeting")
    """
    pid = mon.run(code)
    mon.event("open", pid=pid, path=f"{mon.home}/fleeting/a")
    mon.event("rename", pid=pid, old=f"{mon.home}/fleeting/a", new=f"{mon.home}/fleeting/b")
    mon.event("unlink", pid=pid, path=f"{mon.home}/fleeting/b")
