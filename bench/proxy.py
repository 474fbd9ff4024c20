"""The egress proxy (supervisor/proxy/): what its hop adds to an HTTPS request, and how long
an `egress-allow` takes to reach a Squid holding a long allowlist.

The lab is the one tests/integration/test_proxy.py builds: two network namespaces
(tests/helpers/netlab.py), a DNS server and a TLS server on the hosts' side
(tests/helpers/dns_server.py, tls_server.py; every name resolves to the TLS server's
public address, TTL 0), `clawvisor provision` of one workload with `internet = "proxy"`,
and the real Squid (squid-openssl, `ProxyLayout.argv`) run as the proxy's user in the
workloads' namespace. The workload's `egress_allow` is 1,000 names or 10 (the peer), in
alternating blocks (`clawvisor provision` again between them, as an administrator would
change the list); the name requested is the last of the list's splice rules.

1. Time to first byte: a long-lived client opens a new connection each time and sends
   CONNECT, does the TLS handshake with the name as SNI, sends a GET and stops the clock
   at the first response byte. Through the proxy it runs as the workload's user (Squid
   peeks at the ClientHello and splices); directly it runs as root in the same namespace
   (the firewall confines only workload uids) and connects to the server's address (no
   lookup: through the proxy, Squid's lookup of the name is part of its hop). Requests
   alternate between the two (--requests of each per list size, p50/p99).
2. Allowlist reload: `control.allow(layout, workload, NEW, 443, ttl)`, as the egress-allow
   executor's child calls it (render, write, SIGHUP), while a client of the workload's
   polls the new name every --poll-ms (a fresh CONNECT + TLS + GET each time): reload =
   the call's start to the first byte of an answer over a spliced tunnel (--reloads per
   list size, p50). Each live allow expires (--ttl) before the next is added, so every
   reload renders the list plus exactly one name. Squid's own reconfigure time is read
   from its cache.log, tailed as Squid writes it (its own stamps are whole seconds):
   from its "Reconfiguring Squid Cache" line to its "Accepting ... connections" line for
   the workload's port (which Squid closes meanwhile). The reload is kept in its parts
   too: the call, SIGHUP to that first line, the reconfigure, its last line to the first
   spliced answer. Also: Squid's CPU time per reload (/proc; it includes answering the
   poll's refused attempts), and whether a tunnel opened (TLS handshake done) before each
   reload still carries a request after it.

Users, namespaces, processes (by pid; Squid's own process group), Squid's shared memory
and the scratch directory (/tmp/bench-proxy/) are removed at the end. Writes
bench/results/proxy.json.

    .venv/bin/python -m bench.proxy [--requests 300] [--reloads 10] [--names 1000]
        [--peer-names 10] [--blocks 4]
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import json
import math
import os
import pwd
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, machine, write_result
from supervisor.proxy import control
from supervisor.proxy.squid_conf import ProxyLayout
from tests.helpers import rig
from tests.helpers.netlab import ALLOWED, LAN_HOST, make_lab
from tests.helpers.rules import rule

SCRATCH = Path("/tmp/bench-proxy")
HELPERS = rig.REPO / "tests" / "helpers"
SQUID = "/usr/sbin/squid"
WORKLOAD = "wl"
#: The name every request asks for: it sorts after the generated ones, so its splice rule
#: is the list's last (Squid tries `ssl_bump` lines in order).
TARGET = "target.test"
#: One long-lived client, commands on stdin, one answer line each (stdlib only: it runs
#: as the workload's user with the system's python3).
#:   proxy PORT HOST          one request through the proxy: µs to the first byte
#:   direct ADDRESS HOST      one request straight to ADDRESS:443: µs to the first byte
#:   poll PORT HOST EVERY LIMIT   requests through the proxy until one is answered:
#:                            "ok MONOTONIC ATTEMPTS" (the answer's first byte)
#:   open PORT HOST           a tunnel, TLS handshake done, kept; "open"
#:   use HOST                 one request over the kept tunnel; "ok"
CLIENT = r"""
import socket, ssl, sys, time

CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE
GET = b"GET / HTTP/1.0\r\n\r\n"
held = None


def tunnel(port, host, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("closed before the CONNECT reply")
            head += chunk
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    except BaseException:
        s.close()
        raise
    return s


def answered(t, host):
    t.sendall(GET)
    data = t.recv(4096)
    stamp = time.monotonic()
    if not data:
        raise ConnectionError("no answer")
    while chunk := t.recv(4096):
        data += chunk
    text = data.decode(errors="replace")
    if " 200 " not in text.split("\r\n", 1)[0] or not text.rstrip().endswith(f"sni={host}"):
        raise ConnectionError("wrong answer: " + text[:80])
    return stamp


def first_byte(sock, host):
    t = CTX.wrap_socket(sock, server_hostname=host)
    try:
        return answered(t, host)
    finally:
        t.close()


for line in sys.stdin:
    cmd, *args = line.split()
    try:
        if cmd == "proxy":
            t0 = time.monotonic()
            out = f"{(first_byte(tunnel(int(args[0]), args[1]), args[1]) - t0) * 1e6:.1f}"
        elif cmd == "direct":
            t0 = time.monotonic()
            s = socket.create_connection((args[0], 443), timeout=10)
            out = f"{(first_byte(s, args[1]) - t0) * 1e6:.1f}"
        elif cmd == "poll":
            port, host, every, limit = int(args[0]), args[1], float(args[2]), float(args[3])
            attempts, start = 0, time.monotonic()
            while True:
                attempts += 1
                try:
                    out = f"ok {first_byte(tunnel(port, host, 5), host):.6f} {attempts}"
                    break
                except OSError:
                    if time.monotonic() - start > limit:
                        raise
                    time.sleep(every)
        elif cmd == "open":
            held = CTX.wrap_socket(tunnel(int(args[0]), args[1], 30), server_hostname=args[1])
            out = "open"
        elif cmd == "use":
            answered(held, args[0])
            held.close()
            out = "ok"
        else:
            out = f"err unknown command {cmd}"
    except Exception as e:
        out = f"err {type(e).__name__} {e}".replace("\n", " ")
    print(out, flush=True)
"""


def pct(values: list[float], q: float) -> float:
    """The nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(len(s) * q) - 1)]


def ms(values: list[float]) -> dict[str, float]:
    """p50/p99/min/max of seconds, in ms."""
    return {
        "p50_ms": round(statistics.median(values) * 1e3, 3),
        "p99_ms": round(pct(values, 0.99) * 1e3, 3),
        "min_ms": round(min(values) * 1e3, 3),
        "max_ms": round(max(values) * 1e3, 3),
        "n": len(values),
    }


class Client:
    """CLIENT in its own process; one line out, one line back."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )

    def ask(self, *words: object) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(" ".join(str(w) for w in words) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if not answer or answer.startswith("err"):
            raise RuntimeError(f"client {words[0]}: {answer or 'exited'}")
        return answer

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class CacheLog:
    """Squid's cache.log as it is written, each line stamped (time.monotonic) when read:
    Squid's own stamps are whole seconds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._tail, daemon=True)
        self.thread.start()

    def _tail(self) -> None:
        while not self.path.exists():
            if self.done.wait(0.01):
                return
        with self.path.open("r", errors="replace") as f:
            partial = ""
            while not self.done.is_set():
                chunk = f.readline()
                if not chunk:
                    time.sleep(0.001)
                    continue
                partial += chunk
                if partial.endswith("\n"):
                    with self.lock:
                        self.lines.append((time.monotonic(), partial.rstrip("\n")))
                    partial = ""

    def since(self, t: float) -> list[tuple[float, str]]:
        with self.lock:
            return [(s, line) for s, line in self.lines if s >= t]

    def reconfigure(self, t: float, port: int) -> tuple[float, float] | None:
        """(when Squid logged that it is reconfiguring, when it logged accepting on `port`
        again) for the first reconfigure logged at or after `t`."""
        start = None
        for s, line in self.since(t):
            if start is None and "Reconfiguring Squid Cache" in line:
                start = s
            elif start is not None and "Accepting" in line and f"127.0.0.1:{port} " in line:
                return start, s
        return None

    def wait_reconfigured(self, t: float, port: int, limit: float = 60.0) -> tuple[float, float]:
        deadline = time.monotonic() + limit
        while (found := self.reconfigure(t, port)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("Squid did not log a finished reconfigure")
            time.sleep(0.01)
        return found

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5)


class Bench:
    def __init__(self, root: Path, tag: str, names: int, peer_names: int, reloads: int) -> None:
        self.root, self.tag = root, tag
        self.etc, self.state = root / "etc", root / "state"
        self.layout = ProxyLayout(root / "proxy")
        self.user, self.proxy_user = f"cvbpw{tag}", f"cvbpx{tag}"
        self.gw, self.ops = f"cvbpg{tag}", f"cvbpo{tag}"
        self.lists = {
            n: [f"n{i:04d}.list.test" for i in range(n - 1)] + [TARGET] for n in (names, peer_names)
        }
        self.fresh = [f"r{i:04d}.reload.test" for i in range(2 * reloads + 10)]
        self.used = 0
        self.procs: list[subprocess.Popen[str]] = []
        self.clients: list[Client] = []
        self.squid: subprocess.Popen[str] | None = None
        self.log: CacheLog | None = None
        self.last_log: list[str] = []
        self.net = make_lab()

    # --- set-up ---------------------------------------------------------------------------

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.net.exec(str(rig.CLAWVISOR), *argv, "--config-dir", str(self.etc),
                          "--state-dir", str(self.state), "--runtime-dir", str(self.root / "run")),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    def as_user(self, user: str, *argv: str) -> list[str]:
        pw = pwd.getpwnam(user)
        return self.net.exec(
            "setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", *argv
        )

    def servers(self) -> None:
        names = sorted({n for lst in self.lists.values() for n in lst} | set(self.fresh))
        (self.root / "dns.json").write_text(json.dumps({n: [ALLOWED] for n in names}))
        cert = self.root / "tls.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=lab", "-keyout", str(cert), "-out", str(self.root / "tls.crt")],
            check=True, capture_output=True,
        )  # fmt: skip
        cert.write_text(cert.read_text() + (self.root / "tls.crt").read_text())
        for argv in (
            [sys.executable, str(HELPERS / "dns_server.py"), LAN_HOST, str(self.root / "dns.json")],
            [sys.executable, str(HELPERS / "tls_server.py"), str(cert), f"{ALLOWED}:443"],
        ):
            proc = subprocess.Popen(["ip", "netns", "exec", self.net.hs, *argv],
                                    stdout=subprocess.PIPE, text=True)  # fmt: skip
            self.procs.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def configure(self) -> None:
        (self.etc / "policy.d").mkdir(parents=True)
        (self.etc / "policy.d" / "10.toml").write_text(rule("status"))
        (self.etc / "clawvisor.toml").write_text(f"""
[server]
socket_group = "{self.gw}"
control_group = "{self.ops}"
[provision]
home_root = "{self.root / "home"}"
unit_dir = "{self.root / "units"}"
sysctl_file = "{self.root / "sysctl.d" / "60-clawvisor.conf"}"
dns = ["{LAN_HOST}"]
[proxy]
user = "{self.proxy_user}"
squid = "{SQUID}"
dir = "{self.layout.dir}"
base_port = 820
[monitors]
bpf = false
overlay = false
""")

    def provision(self, names: int) -> float:
        """workloads.toml with a list of `names`, `clawvisor provision`; its seconds."""
        (self.etc / "workloads.toml").write_text(f"""
[workloads.{WORKLOAD}]
user = "{self.user}"
internet = "proxy"
egress_allow = {json.dumps(self.lists[names])}
""")
        t0 = time.monotonic()
        done = self.cli("provision")
        if done.returncode != 0:
            raise RuntimeError("provision failed:\n" + done.stdout + done.stderr)
        return time.monotonic() - t0

    @property
    def port(self) -> int:
        inputs = control.load_inputs(self.layout)
        assert inputs is not None
        return inputs.ports[WORKLOAD]

    def start_squid(self) -> None:
        self.log = CacheLog(self.layout.var / "cache.log")
        self.squid = subprocess.Popen(
            self.as_user(self.proxy_user, *rig.BIND_SERVICE, *self.layout.argv(SQUID)),
            stdout=subprocess.DEVNULL, stderr=(self.root / "squid.stderr").open("w"), text=True,
            start_new_session=True,  # its own process group: ended whole
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not self.listening(self.port):
            if self.squid.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Squid did not start listening:\n" + self.logs())
            time.sleep(0.05)

    def listening(self, port: int) -> bool:
        out = subprocess.run(self.net.exec("ss", "-Hltn", f"sport = :{port}"),
                             capture_output=True, text=True).stdout  # fmt: skip
        return bool(out.strip())

    def logs(self) -> str:
        out = []
        for path in (self.root / "squid.stderr", self.layout.var / "cache.log"):
            with contextlib.suppress(OSError):
                out.append(f"--- {path}:\n" + path.read_text()[-3000:])
        return "\n".join(out)

    def client(self, user: str | None) -> Client:
        argv = ["/usr/bin/python3", "-c", CLIENT]
        c = Client(self.as_user(user, *argv) if user else self.net.exec(*argv))
        self.clients.append(c)
        return c

    # --- the figures -----------------------------------------------------------------------

    def ttfb(self, via: Client, direct: Client, pairs: int) -> tuple[list[float], list[float]]:
        """`pairs` requests each way, alternating (which goes first alternates too)."""
        port = self.port
        for _ in range(10):  # warm-up, not kept
            via.ask("proxy", port, TARGET)
            direct.ask("direct", ALLOWED, TARGET)
        p: list[float] = []
        d: list[float] = []
        for i in range(pairs):
            for way in ("p", "d") if i % 2 == 0 else ("d", "p"):
                if way == "p":
                    p.append(float(via.ask("proxy", port, TARGET)) / 1e6)
                else:
                    d.append(float(direct.ask("direct", ALLOWED, TARGET)) / 1e6)
        return p, d

    def reload(self, poller: Client, every: float, ttl: int) -> dict[str, Any]:
        """One `control.allow` of a new name, timed to its first spliced answer."""
        assert self.log is not None and self.squid is not None
        name = self.fresh[self.used]
        self.used += 1
        port = self.port
        poller.ask("open", port, TARGET)  # the tunnel the reload must not drop
        cpu0 = cpu_seconds(self.squid.pid)
        assert poller.proc.stdin is not None and poller.proc.stdout is not None
        poller.proc.stdin.write(f"poll {port} {name} {every} 30\n")
        poller.proc.stdin.flush()
        time.sleep(0.02)  # polling (and refused) before the allow
        t0 = time.monotonic()
        expires = control.allow(self.layout, WORKLOAD, name, 443, ttl)
        t1 = time.monotonic()  # the SIGHUP was sent just before allow() returned
        answer = poller.proc.stdout.readline().split()
        if not answer or answer[0] != "ok":
            raise RuntimeError(f"{name} was never spliced: {' '.join(answer)}\n" + self.logs())
        cpu = cpu_seconds(self.squid.pid) - cpu0
        try:
            poller.ask("use", TARGET)
            kept = True
        except RuntimeError:
            kept = False
        start, accepting = self.log.wait_reconfigured(t0, port)
        spliced = float(answer[1])
        self.last_log = [
            f"+{(s - t0) * 1e3:.1f} ms {line}" for s, line in self.log.since(t0) if s <= accepting
        ]
        # The next allow must find this one expired, so each reload adds exactly one name.
        while time.time() <= expires + 0.05:
            time.sleep(0.05)
        return {
            "name": name,
            "reload_s": spliced - t0,
            # Its parts: the call (render, write, SIGHUP); until Squid logs that it is
            # reconfiguring; until it logs accepting on the port again; until the poll's
            # first spliced answer.
            "allow_call_s": t1 - t0,
            "sighup_to_reconfiguring_s": start - t1,
            "squid_reconfigure_s": accepting - start,
            "accepting_to_spliced_s": spliced - accepting,
            "squid_cpu_s": cpu,
            "poll_attempts": int(answer[2]),
            "tunnel_kept": kept,
        }

    def settle(self, t: float) -> None:
        """After a provisioning run: Squid has logged a finished reconfigure."""
        assert self.log is not None
        self.log.wait_reconfigured(t, self.port)
        time.sleep(0.3)

    # --- clean-up --------------------------------------------------------------------------

    def close(self) -> None:
        for c in self.clients:
            c.close()
        if self.log is not None:
            self.log.stop()
        if self.squid is not None:
            if self.squid.poll() is None:
                self.squid.send_signal(signal.SIGTERM)
                try:
                    self.squid.wait(20)
                except subprocess.TimeoutExpired:
                    self.squid.kill()
                    self.squid.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.squid.pid, signal.SIGKILL)
        for shm in Path("/dev/shm").glob(self.layout.service + "-*"):
            shm.unlink()
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for user in (self.user, self.proxy_user):
            subprocess.run(["userdel", user], capture_output=True)
        for group in (self.user, self.proxy_user, self.gw, self.ops):
            subprocess.run(["groupdel", group], capture_output=True)
        self.net.close()


def left_behind(b: Bench) -> list[str]:
    """The bench's own users and groups that still exist."""
    users = {p.pw_name for p in pwd.getpwall()}
    groups = {g.gr_name for g in grp.getgrall()}
    return [f"user {u}" for u in (b.user, b.proxy_user) if u in users] + [
        f"group {g}" for g in (b.user, b.proxy_user, b.gw, b.ops) if g in groups
    ]


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    keys = (
        "reload_s",
        "allow_call_s",
        "sighup_to_reconfiguring_s",
        "squid_reconfigure_s",
        "accepting_to_spliced_s",
    )
    out: dict[str, Any] = {k.removesuffix("_s"): ms([r[k] for r in rounds]) for k in keys}
    out["squid_cpu_ms_p50"] = round(statistics.median(r["squid_cpu_s"] for r in rounds) * 1e3, 1)
    out["poll_attempts_p50"] = statistics.median(r["poll_attempts"] for r in rounds)
    out["tunnels_kept"] = sum(r["tunnel_kept"] for r in rounds)
    out["rounds"] = [{k: round(v, 6) if isinstance(v, float) else v for k, v in r.items()}
                     for r in rounds]  # fmt: skip
    return out


def share(total: int, blocks: int, block: int) -> int:
    """Block `block`'s part of `total` split over `blocks`."""
    return total // blocks + (block < total % blocks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="each way, per list size")
    parser.add_argument("--reloads", type=int, default=10, help="per list size")
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--peer-names", type=int, default=10)
    parser.add_argument("--blocks", type=int, default=4, help="alternations of the lists")
    parser.add_argument("--poll-ms", type=float, default=2.0)
    parser.add_argument("--ttl", type=int, default=2, help="each live allow's, seconds")
    args = parser.parse_args()
    sizes = (args.names, args.peer_names)

    SCRATCH.mkdir(exist_ok=True)
    SCRATCH.chmod(0o755)
    root = Path(tempfile.mkdtemp(prefix="run-", dir=SCRATCH))
    root.chmod(0o755)  # the proxy's user reads its configuration under it
    load = os.getloadavg()
    b = Bench(root, secrets.token_hex(2), args.names, args.peer_names, args.reloads)
    ttfb: dict[int, tuple[list[float], list[float]]] = {n: ([], []) for n in sizes}
    reloads: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    provision_s: list[float] = []
    logged: dict[int, list[str]] = {}
    t_start = time.monotonic()
    try:
        b.servers()
        b.configure()
        order = [n for _ in range(args.blocks) for n in sizes]
        provision_s.append(b.provision(order[0]))
        b.start_squid()
        via, direct, poller = b.client(b.user), b.client(None), b.client(b.user)
        for i, n in enumerate(order):
            print(f"block {i + 1}/{len(order)}: {n} names on the list", flush=True)
            if i:
                t = time.monotonic()
                provision_s.append(b.provision(n))
                b.settle(t)
            p, d = b.ttfb(via, direct, share(args.requests, args.blocks, i // len(sizes)))
            ttfb[n][0].extend(p)
            ttfb[n][1].extend(d)
            print(f"  first byte p50: proxied {statistics.median(p) * 1e3:.2f} ms, "
                  f"direct {statistics.median(d) * 1e3:.2f} ms", flush=True)  # fmt: skip
            for _ in range(share(args.reloads, args.blocks, i // len(sizes))):
                r = b.reload(poller, args.poll_ms / 1e3, args.ttl)
                reloads[n].append(r)
                logged[n] = b.last_log
                print(f"  reload {r['reload_s'] * 1e3:.0f} ms (Squid's reconfigure "
                      f"{r['squid_reconfigure_s'] * 1e3:.0f} ms), tunnel kept: "
                      f"{r['tunnel_kept']}", flush=True)  # fmt: skip
        squid_version = subprocess.run(
            [SQUID, "-v"], capture_output=True, text=True
        ).stdout.splitlines()[0]
    finally:
        b.close()
        left = left_behind(b)
        rig.cleanup_root(root)
        with contextlib.suppress(OSError):
            SCRATCH.rmdir()
        if left:
            print(f"left behind: {', '.join(left)}", file=sys.stderr)
    data: dict[str, Any] = {
        "machine": machine(),
        "load_before": load,
        "squid": squid_version,
        "names": args.names,
        "peer_names": args.peer_names,
        "blocks": args.blocks,
        "poll_ms": args.poll_ms,
        "ttl_s": args.ttl,
        "provision_s": [round(s, 3) for s in provision_s],
        "seconds": round(time.monotonic() - t_start, 1),
        "ttfb": {str(n): {"proxied": ms(ttfb[n][0]), "direct": ms(ttfb[n][1])} for n in sizes},
        "reload": {str(n): summary(reloads[n]) for n in sizes},
    }
    for n in sizes:
        # What the reconfigure figures were read from: the last reload's cache.log lines.
        data["reload"][str(n)]["cache_log"] = logged.get(n, [])
        t = data["ttfb"][str(n)]
        t["ratio_p50"] = round(t["proxied"]["p50_ms"] / t["direct"]["p50_ms"], 3)
        t["ratio_p99"] = round(t["proxied"]["p99_ms"] / t["direct"]["p99_ms"], 3)
    all_rounds = [r for n in sizes for r in reloads[n]]
    data["tunnels_kept"] = f"{sum(r['tunnel_kept'] for r in all_rounds)}/{len(all_rounds)}"
    path = write_result("proxy", data)
    for n in sizes:
        t, r = data["ttfb"][str(n)], data["reload"][str(n)]
        print(f"{n} names: first byte p50/p99 proxied {t['proxied']['p50_ms']:.2f}/"
              f"{t['proxied']['p99_ms']:.2f} ms, direct {t['direct']['p50_ms']:.2f}/"
              f"{t['direct']['p99_ms']:.2f} ms; reload p50 {r['reload']['p50_ms']:.0f} ms, "
              f"Squid's reconfigure p50 {r['squid_reconfigure']['p50_ms']:.0f} ms")  # fmt: skip
    print(f"tunnels kept across a reload: {data['tunnels_kept']}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
