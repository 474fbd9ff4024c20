"""Egress by domain through a real Squid, in the two-namespace lab.

`clawvisor provision` makes the proxy's user, configuration and firewall chains in the
workloads' namespace; the test starts Squid from that configuration as that user (what
clawvisor-proxy.service does under systemd) and the daemon beside it. The hosts' side runs
a DNS server (LAN_HOST:53) and a TLS server (ALLOWED:443) that answers with the SNI it got.
Everything (users, namespaces, processes by pid, mounts) is removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor.proxy.squid_conf import ProxyLayout
from tests.helpers import rig
from tests.helpers.netlab import ALLOWED, LAN_HOST, make_lab
from tests.helpers.rules import rule

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
NAMES = {
    "allowed.test": [ALLOWED],
    "other.test": [ALLOWED],  # the same (CDN) address as an allowed name
    "a.cdn.test": [ALLOWED],
    "later.test": [ALLOWED],
    "rebind.test": [LAN_HOST],  # allowed by name, but it resolves to the LAN
}
#: As a workload's client: CONNECT HOST through PORT, TLS with SNI, one request.
CLIENT = r"""
import socket, ssl, sys
port, host, sni = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(f"CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
try:
    head = s.recv(4096).decode()
except OSError as e:
    print("refused", type(e).__name__); sys.exit(0)
if " 200 " not in head.split("\r\n")[0]:
    print("refused", head.split("\r\n")[0]); sys.exit(0)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
try:
    t = ctx.wrap_socket(s, server_hostname=sni)
    t.sendall(b"GET / HTTP/1.0\r\n\r\n")
    body = b""
    while chunk := t.recv(4096):
        body += chunk
    text = body.decode("utf-8", "replace")
    status = text.split("\r\n", 1)[0]
    if " 200 " not in status:
        print("refused", status or "empty"); sys.exit(0)
    print(text.split("\r\n\r\n", 1)[-1].strip())
except (OSError, ssl.SSLError) as e:
    print("refused", type(e).__name__)
"""


class Lab:
    def __init__(self, root: Path, tag: str) -> None:
        self.root, self.tag = root, tag
        self.etc, self.state, self.home = root / "etc", root / "state", root / "home"
        self.proxy_dir = root / "proxy"
        self.users = {"alpha": f"cvtpa{tag}", "beta": f"cvtpb{tag}"}
        self.proxy_user = f"cvtpx{tag}"
        self.gw, self.ops = f"cvtpg{tag}", f"cvtpo{tag}"
        self.net = make_lab()
        self.procs: list[subprocess.Popen[str]] = []
        self.squid: subprocess.Popen[str] | None = None
        self.daemon: subprocess.Popen[str] | None = None

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.net.exec(str(rig.CLAWVISOR), *argv, "--config-dir", str(self.etc),
                          "--state-dir", str(self.state), "--runtime-dir", str(self.root / "run")),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    def uid(self, user: str) -> int:
        return int(subprocess.run(["id", "-u", user], capture_output=True, text=True).stdout)

    def as_user(self, user: str, *argv: str) -> list[str]:
        uid = self.uid(user)
        gid = int(subprocess.run(["id", "-g", user], capture_output=True, text=True).stdout)
        return self.net.exec("setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *argv)

    def through(self, workload: str, host: str, sni: str, port: int | None = None) -> str:
        port = port if port is not None else self.port(workload)
        argv = self.as_user(self.users[workload], "/usr/bin/python3", "-c", CLIENT,
                            str(port), host, sni)  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return (done.stdout.strip() or done.stderr.strip().splitlines()[-1]).strip()

    def port(self, workload: str) -> int:
        inputs = json.loads((self.proxy_dir / "inputs.json").read_text())
        return int(inputs["ports"][workload])

    def nft(self, *argv: str) -> str:
        return subprocess.run(self.net.exec("nft", *argv), capture_output=True, text=True,
                              check=True).stdout  # fmt: skip

    def counter(self, name: str) -> int:
        listing = json.loads(self.nft("-j", "list", "counter", "inet", "clawvisor", name))
        return next(i["counter"]["packets"] for i in listing["nftables"] if "counter" in i)

    def start_squid(self) -> None:
        argv = ProxyLayout(self.proxy_dir).argv("/usr/sbin/squid")
        self.squid = subprocess.Popen(
            self.as_user(self.proxy_user, *rig.BIND_SERVICE, *argv),
            stdout=subprocess.DEVNULL, stderr=(self.root / "squid.stderr").open("w"), text=True,
            start_new_session=True,  # its own process group: ended whole, helpers and all
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not self.listening(self.port("alpha")):
            assert self.squid.poll() is None, self.logs()
            assert time.monotonic() < deadline, "squid did not start listening: " + self.logs()
            time.sleep(0.1)

    def logs(self) -> str:
        out = []
        for path in (self.root / "squid.stderr", self.proxy_dir / "var" / "cache.log"):
            try:
                out.append(f"--- {path}:\n" + path.read_text()[-3000:])
            except OSError as exc:
                out.append(str(exc))
        return "\n".join(out)

    def listening(self, port: int) -> bool:
        out = subprocess.run(self.net.exec("ss", "-Hltn", f"sport = :{port}"),
                             capture_output=True, text=True).stdout  # fmt: skip
        return bool(out.strip())

    def start_daemon(self) -> None:
        self.daemon = subprocess.Popen(
            self.net.exec(str(rig.CLAWVISOR), "serve", "--config-dir", str(self.etc),
                          "--runtime-dir", str(self.root / "run"), "--state-dir", str(self.state),
                          "--log-dir", str(self.root / "log")),
            stdout=subprocess.DEVNULL, stderr=(self.root / "daemon.stderr").open("a"), text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        # Up once its proxy monitor follows the access log: a request made before that
        # is not one it was watching for (the first test alone would race it).
        while self.proxy_state() != "ok":
            assert time.monotonic() < deadline and self.daemon.poll() is None, self.proxy_state()
            time.sleep(0.1)

    def proxy_state(self) -> str:
        """The daemon's proxy monitor state, or why there is none yet."""
        try:
            with rig.connect_as(self.root / "run" / "control.sock", None) as c:
                c.sendall(b'{"id":"s","op":"status"}\n')
                reply = rig.read_lines(c, 1)[0]
        except OSError as exc:
            return str(exc)
        monitors = {m["name"]: m for m in reply.get("result", {}).get("monitors", [])}
        return str(monitors.get("proxy", {}).get("state", "no proxy monitor"))

    def events(self, **match: object) -> list[dict[str, object]]:
        out = subprocess.run(
            [str(rig.CLAWVISOR), "monitor", "--since", "1h", "--format", "json",
             "--log-dir", str(self.root / "log")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        lines = [json.loads(x) for x in out.stdout.splitlines() if x.strip()]
        return [e for e in lines if all(e.get(k) == v for k, v in match.items())]

    def wait_event(self, **match: object) -> dict[str, object]:
        deadline = time.monotonic() + 15
        while not (found := self.events(**match)):
            assert time.monotonic() < deadline, f"no event {match}"
            time.sleep(0.3)
        return found[-1]


def _stop(proc: subprocess.Popen[str] | None, group: bool = False) -> None:
    if proc is not None:
        rig.stop_process(proc, 20)
    if proc is not None and group:
        # All of its group gone before its user is deleted (userdel refuses a user in use).
        deadline = time.monotonic() + 20
        with contextlib.suppress(ProcessLookupError):
            while time.monotonic() < deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                time.sleep(0.1)


@pytest.fixture(scope="module")
def lab():
    tag = secrets.token_hex(2)
    root = rig.shared_tmpdir("clawvisor-proxy-")
    b = Lab(root, tag)
    try:
        (root / "dns.json").write_text(json.dumps(NAMES))
        cert = root / "tls.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=lab", "-keyout", str(cert), "-out", str(root / "tls.crt")],
            check=True, capture_output=True,
        )  # fmt: skip
        cert.write_text(cert.read_text() + (root / "tls.crt").read_text())
        for argv in (
            [
                sys.executable,
                str(HELPERS / "dns_server.py"),
                LAN_HOST,
                str(root / "dns.json"),
                str(root / "dns.log"),
            ],
            [sys.executable, str(HELPERS / "tls_server.py"), str(cert), f"{ALLOWED}:443"],
        ):
            proc = subprocess.Popen(["ip", "netns", "exec", b.net.hs, *argv],
                                    stdout=subprocess.PIPE, text=True)  # fmt: skip
            b.procs.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        (b.etc / "policy.d").mkdir(parents=True)
        (b.etc / "policy.d" / "10.toml").write_text(
            rule("status") + "\n" + rule("egress-allow", "alpha", "allow", "@self")
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
[proxy]
user = "{b.proxy_user}"
dir = "{b.proxy_dir}"
base_port = 820
max_connections = 20
[monitors]
bpf = false
overlay = false
""")
        (b.etc / "workloads.toml").write_text(f"""
[workloads.alpha]
user = "{b.users["alpha"]}"
internet = "proxy"
egress_allow = ["allowed.test", ".cdn.test", "rebind.test"]

[workloads.beta]
user = "{b.users["beta"]}"
internet = "proxy"
""")
        b.first = b.cli("provision")
        assert b.first.returncode == 0, b.first.stdout + b.first.stderr
        b.start_squid()
        b.start_daemon()
        yield b
    finally:
        _stop(b.daemon)
        _stop(b.squid, group=True)
        for shm in Path("/dev/shm").glob(ProxyLayout(b.proxy_dir).service + "-*"):
            shm.unlink()
        for proc in b.procs:
            _stop(proc)
        for user in (*b.users.values(), b.proxy_user):
            subprocess.run(["userdel", user], capture_output=True)
            subprocess.run(["groupdel", user], capture_output=True)
        for group in (b.gw, b.ops):
            subprocess.run(["groupdel", group], capture_output=True)
        b.net.close()
        rig.cleanup_root(root)


def user_of(lab: Lab, workload: str) -> rig.User:
    uid = lab.uid(lab.users[workload])
    gid = int(subprocess.run(["id", "-g", lab.users[workload]], capture_output=True,
                             text=True).stdout)  # fmt: skip
    return rig.User(lab.users[workload], uid, gid)


def test_provisioning_shows_the_proxy_step_and_gives_each_workload_its_own_port(lab):
    assert "proxy:" in lab.first.stdout
    assert lab.port("alpha") != lab.port("beta")
    assert {lab.port("alpha"), lab.port("beta")} <= set(range(820, 830))


def test_the_proxy_runs_as_its_own_unprivileged_user(lab):
    assert lab.squid is not None
    status = Path(f"/proc/{lab.squid.pid}/status").read_text()
    # setpriv execs squid in place: the pid is Squid's own.
    uid_line = next(ln for ln in status.splitlines() if ln.startswith("Uid:"))
    assert set(uid_line.split()[1:]) == {str(lab.uid(lab.proxy_user))}


def test_the_proxy_holds_no_capability_but_binding_its_low_ports(lab):
    assert lab.squid is not None
    status = Path(f"/proc/{lab.squid.pid}/status").read_text()
    caps = {k: int(v, 16) for k, v in (ln.split(":\t") for ln in status.splitlines())
            if k in ("CapEff", "CapPrm", "CapBnd")}  # fmt: skip
    assert caps["CapEff"] == caps["CapPrm"] == 1 << 10  # CAP_NET_BIND_SERVICE


BIND = """
import errno, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
    print("bound")
except OSError as exc:
    print(errno.errorcode[exc.errno])
"""


def test_a_workload_may_not_bind_another_workloads_proxy_port(lab):
    # Refused for want of the capability, before the port is even looked up: so also in
    # the moment a reconfigure has it closed (with ports from 1024 up, another workload
    # could take it then and be sent alpha's requests).
    port = lab.port("alpha")
    assert port < 1024
    argv = lab.as_user(lab.users["beta"], "/usr/bin/python3", "-c", BIND, str(port))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "EACCES", done.stdout + done.stderr


def test_an_allowed_name_is_reached_through_the_proxy(lab):
    assert lab.through("alpha", "allowed.test:443", "allowed.test") == (
        f"tls {ALLOWED}:443 sni=allowed.test"
    )


def test_a_wildcard_entry_allows_names_under_it(lab):
    assert lab.through("alpha", "a.cdn.test:443", "a.cdn.test") == (
        f"tls {ALLOWED}:443 sni=a.cdn.test"
    )


def test_an_sni_that_is_not_the_connect_host_is_refused(lab):
    # other.test is not alpha's; a.cdn.test is, but it is not the host it asked for.
    assert lab.through("alpha", "allowed.test:443", "other.test").startswith("refused")
    assert lab.through("alpha", "allowed.test:443", "a.cdn.test").startswith("refused")


def test_a_name_not_on_the_list_is_refused_even_on_an_allowed_address(lab):
    assert lab.through("alpha", "other.test:443", "other.test").startswith("refused")


def test_an_ip_literal_is_refused(lab):
    assert lab.through("alpha", f"{ALLOWED}:443", "allowed.test").startswith("refused")


def test_a_name_resolving_to_the_lan_is_refused(lab):
    assert lab.through("alpha", "rebind.test:443", "rebind.test").startswith("refused")


def test_another_port_than_the_allowed_one_is_refused(lab):
    assert lab.through("alpha", "allowed.test:8443", "allowed.test").startswith("refused")


def test_a_workload_cannot_use_another_workloads_port(lab):
    before = lab.counter("beta_drop_lan")
    out = lab.through("beta", "allowed.test:443", "allowed.test", port=lab.port("alpha"))
    assert "TimeoutError" in out or "timed out" in out or out.startswith("refused"), out
    assert lab.counter("beta_drop_lan") > before


def test_a_workload_with_nothing_allowed_gets_nothing(lab):
    assert lab.through("beta", "allowed.test:443", "allowed.test").startswith("refused")


#: As a workload: PORT, then a request (hex), then optional raw bytes to send after a
#: 200 (hex); prints the first line of each answer, or how the connection ended.
RAW = r"""
import socket, sys
port, first, then = int(sys.argv[1]), bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port), timeout=5)
try:
    s.sendall(first)
    head = s.recv(4096)
    print(head.split(b"\r\n")[0].decode("latin-1") or "closed")
    if then and b" 200 " in head:
        s.sendall(then)
        print(s.recv(4096)[:40].hex() or "closed")
except OSError as e:
    print(type(e).__name__)
"""


def raw(lab: Lab, workload: str, first: bytes, then: bytes = b"") -> list[str]:
    argv = lab.as_user(lab.users[workload], "/usr/bin/python3", "-c", RAW,
                       str(lab.port(workload)), first.hex(), then.hex())  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return out.stdout.split()


def client_hello(sni: bytes) -> bytes:
    """A TLS 1.2 ClientHello naming `sni` (any bytes: Python's ssl refuses odd names)."""
    ciphers = bytes.fromhex("c02fc030c02bc02c009c009d")
    body = b"\x03\x03" + os.urandom(32) + b"\x00" + len(ciphers).to_bytes(2, "big") + ciphers
    body += b"\x01\x00"
    entry = b"\x00" + len(sni).to_bytes(2, "big") + sni
    names = len(entry).to_bytes(2, "big") + entry
    ext = b"\x00\x00" + len(names).to_bytes(2, "big") + names
    ext += bytes.fromhex("000a00040002001d") + bytes.fromhex("000b00020100")
    ext += bytes.fromhex("000d000400020401")
    body += len(ext).to_bytes(2, "big") + ext
    hello = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hello).to_bytes(2, "big") + hello


def test_a_name_not_on_the_list_is_never_looked_up(lab):
    """Or any name would leave through the resolver, a tunnel around the list."""
    tag = secrets.token_hex(4)
    lab.through("beta", f"b{tag}-secret.exfil.test:443", f"b{tag}-secret.exfil.test")
    raw(lab, "alpha", f"GET http://a{tag}-secret.exfil.test/ HTTP/1.1\r\n"
        f"Host: a{tag}-secret.exfil.test\r\n\r\n".encode())  # fmt: skip
    lab.through("alpha", "allowed.test:443", "allowed.test")  # a name on the list: looked up
    asked = (lab.root / "dns.log").read_text()
    assert "allowed.test" in asked
    assert tag not in asked, asked


def test_the_cache_manager_is_refused(lab):
    for request in (
        b"GET cache_object://allowed.test:443/menu HTTP/1.0\r\n\r\n",
        b"GET http://allowed.test:443/squid-internal-mgr/menu HTTP/1.0\r\n"
        b"Host: allowed.test:443\r\n\r\n",
        b"GET ftp://allowed.test:443/ HTTP/1.0\r\n\r\n",
    ):
        answer = " ".join(raw(lab, "alpha", request))
        assert answer in ("ConnectionResetError", "closed", "HTTP/1.1 403 Forbidden"), (
            request,
            answer,
        )


def test_an_sni_holding_a_newline_cannot_forge_another_workloads_event(lab):
    forged = (
        f"{time.time():.3f} {lab.port('beta')} CONNECT forged.test 443 9 9 TCP_TUNNEL 200 "
        "forged.test 203.0.113.9 splice"
    )
    hello = client_hello(b"x\n" + forged.encode() + b"\nx y")
    raw(lab, "alpha", b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n", hello)
    lab.through("alpha", "allowed.test:443", "allowed.test")
    lab.wait_event(kind="proxy", workload="alpha", sni="allowed.test")
    assert not lab.events(domain="forged.test")
    assert not [e for e in lab.events(kind="proxy") if e.get("workload") == "beta"
                and e.get("domain") == "forged.test"]  # fmt: skip
    line = next(ln for ln in (lab.proxy_dir / "var" / "access.log").read_text().splitlines()
                if "forged.test" in ln)  # fmt: skip
    assert "%0A" in line or "%0a" in line  # escaped by Squid, one line


def test_a_workload_holding_many_connections_does_not_starve_another(lab):
    hold = subprocess.Popen(
        lab.as_user(lab.users["beta"], "/usr/bin/python3", "-c", HOARD, str(lab.port("beta"))),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert hold.stdout is not None and hold.stdin is not None
    try:
        opened = int(hold.stdout.readline())
        assert opened == 20, opened  # [proxy] max_connections; the rest were dropped
        assert lab.through("alpha", "allowed.test:443", "allowed.test").startswith("tls")
    finally:
        hold.stdin.close()
        hold.wait(30)


#: Opens up to 60 connections to PORT, prints how many got through, holds them.
HOARD = r"""
import socket, sys
held = []
for _ in range(60):
    s = socket.socket(); s.settimeout(0.5)
    try:
        s.connect(("127.0.0.1", int(sys.argv[1]))); held.append(s)
    except OSError:
        s.close()
print(len(held), flush=True)
sys.stdin.read()
"""


def test_a_direct_connection_bypassing_the_proxy_is_dropped_and_counted(lab):
    before = lab.counter("alpha_drop")
    code = (
        "import socket; s = socket.socket(); s.settimeout(2)\n"
        f"try: s.connect(('{ALLOWED}', 443)); print('connected')\n"
        "except OSError as e: print(type(e).__name__)"
    )
    argv = lab.as_user(lab.users["alpha"], "/usr/bin/python3", "-c", code)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    assert out in ("TimeoutError", "timeout"), out
    assert lab.counter("alpha_drop") > before


def test_a_proxy_workload_has_no_dns(lab):
    before = lab.counter("alpha_drop_dns")
    code = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)\n"
        f"s.sendto(b'\\x12\\x34\\x01\\x00\\x00\\x01' + bytes(6) + b'\\x07allowed\\x04test\\x00"
        f"\\x00\\x01\\x00\\x01', ('{LAN_HOST}', 53))\n"
        "try: s.recv(512); print('answered')\n"
        "except OSError as e: print(type(e).__name__)"
    )
    argv = lab.as_user(lab.users["alpha"], "/usr/bin/python3", "-c", code)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() != "answered", out
    assert lab.counter("alpha_drop_dns") > before


def test_the_proxy_itself_cannot_reach_the_lan(lab):
    before = lab.counter("clawvisor-proxy_drop_lan")
    code = (
        "import socket; s = socket.socket(); s.settimeout(2)\n"
        f"try: s.connect(('{LAN_HOST}', 80)); print('connected')\n"
        "except OSError as e: print(type(e).__name__)"
    )
    argv = lab.as_user(lab.proxy_user, "/usr/bin/python3", "-c", code)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    assert out == "TimeoutError", out
    assert lab.counter("clawvisor-proxy_drop_lan") > before


def test_each_proxied_request_is_a_kept_event_with_its_workload_and_verdict(lab):
    lab.through("alpha", "allowed.test:443", "allowed.test")
    lab.through("alpha", f"{ALLOWED}:443", "x")
    ok = lab.wait_event(kind="proxy", workload="alpha", domain="allowed.test", allowed=True)
    assert ok["port"] == 443 and ok["sni"] == "allowed.test" and ok["tls"] == "splice"
    assert int(ok["received"]) > 0  # type: ignore[call-overload]
    refused = lab.wait_event(kind="proxy", workload="alpha", domain=ALLOWED, allowed=False)
    assert refused["status"] == "TCP_DENIED"


def wait_refused_alert(lab: Lab, domain: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        # The trail wherever the daemon wrote it: journald, or its fallback file.
        out = subprocess.run(
            [str(rig.CLAWVISOR), "audit", "log", "--format", "json", "--kind", "alert",
             "--chain", "all", "--log-dir", str(lab.root / "log"),
             "--state-dir", str(lab.state)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        alerts = [x for x in out.stdout.splitlines() if "proxy-refused" in x]
        if any(domain in a for a in alerts):
            return
        assert time.monotonic() < deadline, (out.stdout[-2000:], out.stderr[-500:])
        time.sleep(0.3)


def test_a_refused_request_raises_the_proxy_refused_alert(lab):
    lab.through("alpha", "not-on-the-list.test:443", "not-on-the-list.test")
    wait_refused_alert(lab, "not-on-the-list.test")


def test_a_request_refused_while_the_daemon_was_down_is_alerted_once_it_is_back(lab):
    _stop(lab.daemon)
    try:
        out = lab.through("alpha", "while-down.test:443", "while-down.test")
        assert out.startswith("refused"), out
    finally:
        lab.start_daemon()
    wait_refused_alert(lab, "while-down.test")


def test_egress_allow_adds_a_name_for_the_workload_without_dropping_open_tunnels(lab):
    assert lab.through("alpha", "later.test:443", "later.test").startswith("refused")
    # A tunnel opened before the reload...
    alpha = user_of(lab, "alpha")
    opener = subprocess.Popen(
        lab.as_user(lab.users["alpha"], "/usr/bin/python3", "-c", HOLD, str(lab.port("alpha"))),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert opener.stdout is not None and opener.stdin is not None
    assert opener.stdout.readline().strip() == "open"
    reply = rig.call(
        lab.root / "run" / "intents.sock",
        alpha,
        {"action": "egress-allow", "host": "later.test", "port": 443, "ttl": 600},
    )
    assert reply["status"] == "ok", reply
    assert reply["result"]["via"] == "proxy"
    # The reply comes once Squid has re-read its lists and listens again: the first try works.
    assert (
        lab.through("alpha", "later.test:443", "later.test") == f"tls {ALLOWED}:443 sni=later.test"
    )
    # ...still carries traffic after it.
    opener.stdin.write("go\n")
    opener.stdin.flush()
    assert opener.stdout.readline().strip() == f"tls {ALLOWED}:443 sni=allowed.test"
    opener.wait(10)
    # beta's list did not change.
    assert lab.through("beta", "later.test:443", "later.test").startswith("refused")


def test_egress_allow_replies_once_squid_accepts_on_every_port_again(lab):
    # A reconfigure closes every workload's port for a moment: replying before Squid
    # listens again told the agent a name works while its next connection was refused.
    log = lab.proxy_dir / "var" / "cache.log"
    offset = log.stat().st_size
    reply = rig.call(
        lab.root / "run" / "intents.sock",
        user_of(lab, "alpha"),
        {"action": "egress-allow", "host": "soon.test", "ttl": 60},
    )
    assert reply["status"] == "ok", reply
    with log.open("rb") as f:
        f.seek(offset)
        since = f.read().decode(errors="replace")
    assert since.count("Reconfiguring Squid Cache") == 1, since
    after = since.split("Reconfiguring Squid Cache", 1)[1]
    for workload in ("alpha", "beta"):
        assert f"local=127.0.0.1:{lab.port(workload)} " in after, (workload, after)
    assert lab.listening(lab.port("beta"))


#: Opens a tunnel to allowed.test, says "open", waits for a line, then uses it.
HOLD = r"""
import socket, ssl, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
s.sendall(b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
assert b" 200 " in s.recv(4096)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s, server_hostname="allowed.test")
print("open", flush=True)
sys.stdin.readline()
t.sendall(b"GET / HTTP/1.0\r\n\r\n")
body = b""
while chunk := t.recv(4096):
    body += chunk
print(body.decode().split("\r\n\r\n", 1)[-1].strip(), flush=True)
"""


def test_an_egress_allow_for_another_workload_is_refused_by_policy(lab):
    beta = user_of(lab, "beta")
    reply = rig.call(
        lab.root / "run" / "intents.sock",
        beta,
        {"action": "egress-allow", "host": "later.test", "port": 443, "ttl": 600},
    )
    assert reply["status"] != "ok"


def test_status_shows_the_proxy_monitor(lab):
    with rig.connect_as(lab.root / "run" / "control.sock", None) as c:
        c.sendall(b'{"id":"s","op":"status"}\n')
        reply = rig.read_lines(c, 1)[0]
    monitors = {m["name"]: m for m in reply["result"]["monitors"]}
    assert monitors["proxy"]["state"] == "ok", monitors["proxy"]
    assert monitors["proxy"]["counts"]["requests"] > 0


def proxy_checks(lab: Lab) -> dict[str, dict[str, str]]:
    out = lab.cli("verify", "--workload", "alpha", "--json")
    checks = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    return {c["check"]: c for c in checks}


def test_verify_probes_the_proxy_from_inside_the_workload(lab):
    checks = proxy_checks(lab)
    for name in (
        "allowed name reachable through the proxy",
        "another SNI for it refused",
        "its address as an IP literal refused",
        "a direct connection to it dropped",
    ):
        assert checks[name]["result"] == "PASS", checks[name]
    assert "alpha_drop +" in checks["a direct connection to it dropped"]["reason"]
    assert checks["DNS to the resolvers refused"]["result"] == "PASS"


def weaken(lab: Lab) -> str:
    """Splice whatever alpha's CONNECTs ask for (an edit by hand); the text it replaced."""
    conf = lab.proxy_dir / "squid.conf"
    saved = conf.read_text()
    weak = re.sub(r"ssl_bump splice step2 wl_alpha .*", "ssl_bump splice step2 wl_alpha", saved)
    assert weak != saved
    conf.write_text(weak)
    assert lab.squid is not None
    os.kill(lab.squid.pid, signal.SIGHUP)
    return saved


def test_a_proxy_configuration_edited_by_hand_is_put_back_by_the_daemon(lab):
    saved = weaken(lab)
    deadline = time.monotonic() + 30
    while (lab.proxy_dir / "squid.conf").read_text() != saved:
        assert time.monotonic() < deadline, "the hand edit stayed"
        time.sleep(0.5)
    deadline = time.monotonic() + 15
    while not lab.through("alpha", "allowed.test:443", "other.test").startswith("refused"):
        assert time.monotonic() < deadline, "Squid was not reloaded"
        time.sleep(0.5)


def test_verify_fails_when_the_proxy_lets_another_sni_through(lab):
    """Runs last: it stops the daemon, which would put the edit back (above)."""
    _stop(lab.daemon)
    saved = weaken(lab)
    try:
        time.sleep(1.5)
        assert lab.through("alpha", "allowed.test:443", "other.test").startswith("tls")
        assert proxy_checks(lab)["another SNI for it refused"]["result"] == "FAIL"
    finally:
        (lab.proxy_dir / "squid.conf").write_text(saved)
        assert lab.squid is not None
        os.kill(lab.squid.pid, signal.SIGHUP)


def test_deprovisioning_a_proxy_workload_closes_its_port_and_keeps_the_others(lab):
    beta_port = lab.port("beta")
    out = lab.cli("deprovision", "beta")
    assert out.returncode == 0, out.stdout + out.stderr
    text = (lab.etc / "workloads.toml").read_text()
    (lab.etc / "workloads.toml").write_text(text.split("[workloads.beta]")[0])
    assert f":{beta_port} " not in (lab.proxy_dir / "squid.conf").read_text()
    deadline = time.monotonic() + 15
    while lab.listening(beta_port):
        assert time.monotonic() < deadline, "Squid still listens on the removed port"
        time.sleep(0.3)
    assert lab.through("alpha", "allowed.test:443", "allowed.test").startswith("tls")


def test_deprovisioning_the_last_proxy_workload_takes_the_proxy_down(lab):
    out = lab.cli("deprovision", "alpha")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "take the egress proxy down" in out.stdout
    assert lab.squid is not None
    lab.squid.wait(20)
    assert not lab.proxy_dir.exists()
    gone = subprocess.run(["id", lab.proxy_user], capture_output=True)
    assert gone.returncode != 0
