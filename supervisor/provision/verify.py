"""`clawvisor verify`: attack the provisioned box from inside each workload; PASS/FAIL/SKIP.

Every probe runs as the workload's user (uid, gid and groups), in a separate process.
A network probe passes only when the connection attempt fails with EPERM, which is what
a local nftables drop in the output hook gives; a timeout or a refusal means the packet
left the machine, so it is not proof of anything.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import msgspec

from executors.nft import FAMILY, TABLE, Nft, NftError

from ..config import WorkloadSpec, resolves
from ..proxy.allowlist import static_allows
from ..verify_result import Check, Result
from .box import Box
from .firewall import counter_name
from .networks import parse_entry, resolvers
from .proxy import proxy_ports


@dataclass(frozen=True)
class Probe:
    """A probe's outcome, as the probe process reported it."""

    outcome: str
    detail: str


def _as(user: str) -> dict[str, Any]:
    pw = pwd.getpwnam(user)
    return {
        "user": pw.pw_uid,
        "group": pw.pw_gid,
        "extra_groups": os.getgrouplist(pw.pw_name, pw.pw_gid),
        "cwd": "/",
        "env": {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        },
    }


PROBE = (sys.executable, "-m", "supervisor.provision.probe")


def probe(user: str, *argv: str) -> Probe:
    """Run one probe as `user`."""
    out = subprocess.run(
        [*PROBE, *argv], capture_output=True, text=True, timeout=60, check=False, **_as(user)
    )
    try:
        data = json.loads(out.stdout)
        return Probe(str(data["outcome"]), str(data["detail"]))
    except (ValueError, KeyError):
        return Probe("error", (out.stderr or out.stdout).strip()[-300:])


def _denied(p: Probe, what: str) -> tuple[Result, str]:
    if p.outcome in ("EACCES", "EPERM"):
        return "PASS", f"{what}: {p.outcome}"
    return "FAIL", f"{what}: {p.outcome} {p.detail}".strip()


def counter_packets(workload: str, reason: str) -> int | None:
    """Packets the workload's named counter has seen, None if there is no such counter."""
    try:
        out = Nft().run(
            {
                "list": {
                    "counter": {
                        "family": FAMILY,
                        "table": TABLE,
                        "name": counter_name(workload, reason),
                    }
                }
            }
        )
    except NftError:
        return None
    for item in (out or {}).get("nftables", []):
        if "counter" in item:
            return int(item["counter"]["packets"])
    return None


def blocked(
    user: str, workload: str, target: str, reason: str, kind: str = "connect"
) -> tuple[Result, str]:
    """Try a TCP connection (or with `kind` "dns", a DNS query over UDP) as `user`; PASS
    only if it failed AND the drop counter moved.

    A SYN dropped in the output hook just times out, which on its own proves nothing
    (a host that does not answer looks the same); the workload's own counter for this
    reason going up proves clawvisor's firewall dropped it.
    """
    before = counter_packets(workload, reason)
    p = probe(user, kind, *_hostport(target), "1")
    after = counter_packets(workload, reason)
    return _counted(workload, reason, target, p, before, after)


def _counted(
    workload: str, reason: str, target: str, p: Probe, before: int | None, after: int | None
) -> tuple[Result, str]:
    """A blocked probe's verdict: it got nowhere AND the workload's counter moved."""
    if p.outcome in ("connected", "answered"):
        return "FAIL", f"{target}: {p.outcome}"
    if before is None or after is None:
        return "FAIL", f"{target}: {p.outcome}; no counter {counter_name(workload, reason)}"
    if after > before:
        return "PASS", (
            f"{target}: {p.outcome}, dropped by the firewall "
            f"({counter_name(workload, reason)} +{after - before})"
        )
    return "FAIL", (
        f"{target}: {p.outcome} {p.detail}, but "
        f"{counter_name(workload, reason)} did not move: not dropped here"
    ).strip()


def inbound_blocked(user: str, workload: str) -> tuple[Result, str]:
    """A listener of the workload's on a loopback port, connected to by this (root)
    process: PASS only if the connection failed AND `drop_in` moved (the listener's
    SYN-ACK dropped on its way out)."""
    with subprocess.Popen(
        [*PROBE, "listen", "4"], stdout=subprocess.PIPE, text=True, **_as(user)
    ) as listener:
        assert listener.stdout is not None
        try:
            port = int(json.loads(listener.stdout.readline())["port"])
        except (ValueError, KeyError, TypeError):
            listener.kill()
            return "FAIL", "the probe listener did not start"
        before = counter_packets(workload, "drop_in")
        with socket.socket() as s:
            s.settimeout(2)
            try:
                s.connect(("127.0.0.1", port))
                got = Probe("connected", "")
            except OSError as exc:
                got = Probe(type(exc).__name__, "")
        after = counter_packets(workload, "drop_in")
        listener.kill()
    return _counted(workload, "drop_in", f"127.0.0.1:{port}", got, before, after)


def _hostport(text: str) -> tuple[str, str]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), port


def checks_for(box: Box, name: str, spec: WorkloadSpec) -> list[Check]:
    """Every check of one workload."""
    out: list[Check] = []
    user = spec.user
    home = box.home(name)
    v = box.settings.verify

    def add(check: str, result: Result, reason: str) -> None:
        out.append(Check(workload=name, check=check, result=result, reason=reason))

    # network: negative
    lan = v.lan_probe or default_gateway()
    if lan:
        add("LAN address unreachable", *blocked(user, name, lan, "drop_lan"))
    else:
        add("LAN address unreachable", "SKIP", "no [verify] lan_probe and no default gateway")
    meta = box.settings.provision.metadata[0]
    add("metadata address unreachable", *blocked(user, name, f"{meta}:80", "drop_meta"))
    if spec.internet == "open":
        add("non-allowlisted internet unreachable", "SKIP", "internet = open")
    else:
        add("non-allowlisted internet unreachable", *blocked(user, name, v.internet_probe, "drop"))
    servers = resolvers(box)
    if resolves(spec):
        add("DNS to the resolvers refused", "SKIP", "this workload may use DNS")
    elif not servers:
        add("DNS to the resolvers refused", "SKIP", "no resolver configured or in resolv.conf")
    else:
        add(
            "DNS to the resolvers refused",
            *blocked(user, name, f"{servers[0]}:53", "drop_dns", kind="dns"),
        )
    add("inbound connection to its listener dropped", *inbound_blocked(user, name))
    # files: negative
    others = [n for n in box.workloads if n != name]
    if others:
        other = box.home(others[0])
        add(
            f"other workload's home ({others[0]}) unreadable",
            *_denied(probe(user, "list", str(other)), f"list {other}"),
        )
    else:
        add("other workload's home unreadable", "SKIP", "only one workload")
    ops = home / "ops"
    add("own ops/ unlistable", *_denied(probe(user, "list", str(ops)), f"list {ops}"))
    add("own ops/ unreadable", *_denied(probe(user, "read", str(ops / "x")), f"read {ops}/x"))
    config = home / "config"
    files = sorted(p for p in config.iterdir() if p.is_file()) if config.is_dir() else []
    if files:
        add(
            "root-owned config not writable",
            *_denied(probe(user, "write", str(files[0])), f"write {files[0]}"),
        )
    add(
        "config/ not writable",
        *_denied(
            probe(user, "write", str(config / f".verify-{secrets.token_hex(4)}")),
            f"create in {config}",
        ),
    )
    add(
        "config/ cannot be swapped",
        *_denied(
            probe(user, "rename", str(config), str(home / "config.swapped")), f"rename {config}"
        ),
    )
    sudo = probe(user, "run", "sudo", "-n", "true")
    if sudo.outcome == "missing":
        add("sudo -n true refused", "SKIP", "sudo is not installed: nothing to probe")
    elif sudo.outcome == "exit 0":
        add("sudo -n true refused", "FAIL", "sudo -n true succeeded")
    else:
        add("sudo -n true refused", "PASS", f"sudo: {sudo.outcome}")
    control = str(box.paths.control_socket)
    c = probe(user, "unix", control, json.dumps({"id": "verify", "op": "status"}))
    if c.outcome in ("EACCES", "EPERM") or (c.outcome == "reply" and "unauthorized" in c.detail):
        add("control.sock refused", "PASS", f"{control}: {c.outcome}")
    else:
        add("control.sock refused", "FAIL", f"{control}: {c.outcome} {c.detail}")
    # positive
    target = _allow_probe(spec)
    if spec.internet != "allowlist" or target is None:
        add(
            "allowlisted destination reachable",
            "SKIP",
            "no allowlist entry with an address and a port",
        )
    else:
        p = probe(user, "connect", *target)
        add(
            "allowlisted destination reachable",
            "PASS" if p.outcome == "connected" else "FAIL",
            f"{target[0]}:{target[1]}: {p.outcome} {p.detail}".strip(),
        )
    for svc in spec.host_services:
        host, port = _hostport(svc)
        p = probe(user, "connect", host, port, "2")
        # A refusal is an answer from the service's host: the packet got there.
        reached = p.outcome in ("connected", "refused")
        add(
            f"host service {svc} reachable",
            "PASS" if reached else "FAIL",
            f"{svc}: {p.outcome} {p.detail}".strip(),
        )
    if spec.internet == "proxy":
        out += _proxy_checks(box, name, spec)
    add("agent/ script runs", *_agent_script(user, home / "agent"))
    r = probe(
        user,
        "unix",
        str(box.paths.intents_socket),
        json.dumps({"id": "verify", "intent": {"action": "status"}}),
    )
    add(
        "intents.sock answers",
        "PASS" if r.outcome == "reply" and '"verify"' in r.detail else "FAIL",
        f"{box.paths.intents_socket}: {r.outcome} {r.detail[:80]}".strip(),
    )
    return out


def _proxy_checks(box: Box, name: str, spec: WorkloadSpec) -> list[Check]:
    """Through the proxy: an allowed name is reached, another SNI for it, an IP literal and
    a direct connection to its address are not. The name is resolved as the proxy's user
    (the workload itself has no DNS), never as root."""
    checks: list[Check] = []

    def add(check: str, result: Result, reason: str) -> None:
        checks.append(Check(workload=name, check=check, result=result, reason=reason))

    port = str(proxy_ports(box)[name])
    allowed = [
        a
        for a in static_allows(spec, box.settings.proxy.default_ports)
        if not a.domain.startswith(".")
    ]
    names = (
        "allowed name reachable through the proxy",
        "another SNI for it refused",
        "its address as an IP literal refused",
        "a direct connection to it dropped",
    )
    if not allowed:
        for check in names:
            add(check, "SKIP", "no egress_allow name (a wildcard cannot be probed)")
        return checks
    first = allowed[0]
    target = f"{first.domain}:{first.port}"
    p = probe(spec.user, "proxy", port, target, first.domain)
    add(names[0], "PASS" if p.outcome == "tls" else "FAIL", f"{target}: {p.outcome} {p.detail}")
    p = probe(spec.user, "proxy", port, target, "clawvisor-verify.invalid")
    ok = p.outcome in ("terminated", "refused")
    add(names[1], "PASS" if ok else "FAIL", f"{target}, SNI clawvisor-verify.invalid: "
        f"{p.outcome} {p.detail}".strip())  # fmt: skip
    address = _resolve_as(box, first.domain)
    if address is None:
        add(names[2], "SKIP", f"{first.domain} did not resolve (as the proxy's user)")
        add(names[3], "SKIP", f"{first.domain} did not resolve (as the proxy's user)")
        return checks
    literal = f"[{address}]:{first.port}" if ":" in address else f"{address}:{first.port}"
    p = probe(spec.user, "proxy", port, literal, first.domain)
    ok = p.outcome in ("terminated", "refused")
    add(names[2], "PASS" if ok else "FAIL", f"{literal}: {p.outcome} {p.detail}".strip())
    add(names[3], *blocked(spec.user, name, literal, "drop"))
    return checks


def _resolve_as(box: Box, host: str) -> str | None:
    """`host`'s first IPv4 address from the proxy's own resolver, asked as its user."""
    servers = resolvers(box)
    if not servers:
        return None
    p = probe(box.settings.proxy.user, "resolve", servers[0], host)
    return p.detail if p.outcome == "answered" else None


def default_gateway() -> str | None:
    """The IPv4 default gateway, port 80 (a LAN address every VM has), via pyroute2."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for route in ipr.get_default_routes(family=2):
            gw = route.get_attr("RTA_GATEWAY")
            if gw:
                return f"{gw}:80"
    return None


def _allow_probe(spec: WorkloadSpec) -> tuple[str, str] | None:
    for entry in spec.egress_allow:
        what, port = parse_entry(entry)
        if port is not None and "/" not in what and any(c.isdigit() for c in what[-1:]):
            return what, str(port)
    return None


def _agent_script(user: str, agent: Path) -> tuple[Result, str]:
    if not agent.is_dir():
        return "FAIL", f"{agent} is missing"
    script = agent / f".clawvisor-verify-{secrets.token_hex(4)}"
    script.write_text("#!/usr/bin/python3 -S\nprint('agent tier ok')\n")
    script.chmod(0o755)
    try:
        p = probe(user, "run", str(script))
    finally:
        script.unlink()
    ok = p.outcome == "exit 0" and "agent tier ok" in p.detail
    return ("PASS" if ok else "FAIL"), f"{p.outcome} {p.detail}".strip()


def verify(
    box: Box, workload: str | None = None, as_json: bool = False, out: TextIO = sys.stdout
) -> int:
    """Run every check; print a table (or JSON lines); exit 1 on any FAIL."""
    names = [workload] if workload else sorted(box.workloads)
    results: list[Check] = []
    for name in names:
        if name not in box.workloads:
            print(f"clawvisor verify: no workload {name!r}", file=sys.stderr)
            return 2
        spec = box.workloads[name]
        try:
            pwd.getpwnam(spec.user)
        except KeyError:
            results.append(
                Check(
                    workload=name,
                    check="provisioned",
                    result="FAIL",
                    reason=f"user {spec.user} does not exist",
                )
            )
            continue
        results += checks_for(box, name, spec)
    if as_json:
        for r in results:
            print(msgspec.json.encode(r).decode(), file=out)
    else:
        width = max(len(r.check) for r in results) if results else 10
        for r in results:
            print(f"{r.result:4}  {r.workload:12} {r.check:{width}}  {r.reason}", file=out)
        fails = sum(r.result == "FAIL" for r in results)
        print(
            f"{len(results)} checks: {sum(r.result == 'PASS' for r in results)} PASS, "
            f"{fails} FAIL, {sum(r.result == 'SKIP' for r in results)} SKIP",
            file=out,
        )
    return 1 if any(r.result == "FAIL" for r in results) else 0
