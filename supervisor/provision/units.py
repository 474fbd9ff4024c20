"""systemd units made for this box: a service that mounts the overlays at boot, a drop-in per
gateway, and a drop-in that lets the sandboxed daemon write the sync-out destinations.

The packaged units (units/) are installed by `make install` or the Debian package, not
here. Installed and enabled only when systemd is running; otherwise listed as skipped
with the reason (the overlays are then mounted, but will not come back after a reboot).
"""

from __future__ import annotations

import string
import sys
from functools import partial
from pathlib import Path

from ..config import resolves
from ..persist import write_atomic
from .box import SYSTEMD_RUNNING, Box
from .networks import resolvers
from .plan import Plan, run
from .proxy import PROXY_UNIT, layout, proxy_ports, proxy_workloads

_PLAIN = set(string.ascii_letters + string.digits + ":_.")


def systemd_escape_path(path: str) -> str:
    """`systemd-escape --path`: what a mount unit for `path` must be called (sans suffix)."""
    trimmed = path.strip("/")
    if not trimmed:
        return "-"
    out = []
    for i, ch in enumerate(trimmed):
        if ch == "/":
            out.append("-")
        elif ch in _PLAIN and not (i == 0 and ch == "."):
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode())
    return "".join(out)


def quote_exec(argv: list[str]) -> str:
    """An ExecStart= line for argv: each argument double-quoted, specials escaped."""

    def q(arg: str) -> str:
        escaped = (
            arg.replace("\\", "\\\\")
            .replace('"', '\\"')
            .replace("%", "%%")
            .replace("$", "$$")
            .replace("\n", "\\n")
        )
        return f'"{escaped}"'

    return " ".join(q(a) for a in argv)


OVERLAYS_UNIT = "clawvisor-overlays.service"


def legacy_mount_unit(box: Box, name: str) -> str:
    """The mount unit earlier releases wrote per overlay (removed: it mounted `lower` as is)."""
    return f"{systemd_escape_path(str(box.merged(name)))}.mount"


def overlays_unit(box: Box) -> str:
    """Mounts every overlay (its idmapped lower view first) at boot, before the workloads."""
    argv = [sys.executable, "-m", "supervisor", "provision", "--only", "overlay"]
    argv += ["--config-dir", str(box.paths.config_dir)]
    argv += ["--runtime-dir", str(box.paths.runtime_dir)]
    argv += ["--state-dir", str(box.paths.state_dir)]
    return (
        "# Written by clawvisor provision: the overlays of the workloads.\n"
        "[Unit]\n"
        "Description=clawvisor workload overlays (idmapped lower layers)\n"
        "After=local-fs.target\nBefore=clawvisor.service\n\n"
        "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
        f"ExecStart={quote_exec(argv)}\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


def proxy_unit(box: Box) -> str:
    """Squid as the proxy's own user, sandboxed: it may write only its `var/`."""
    lay = layout(box)
    squid = box.settings.proxy.squid
    user = box.settings.proxy.user
    return (
        "# Written by clawvisor provision: the workloads' egress proxy.\n"
        "[Unit]\n"
        "Description=clawvisor egress proxy (Squid: peek and splice, no TLS interception)\n"
        "After=network.target\nBefore=clawvisor.service\n\n"
        "[Service]\nType=simple\n"
        f"User={user}\nGroup={user}\n"
        f"ExecStartPre={quote_exec([squid, '-k', 'parse', '-f', str(lay.conf)])}\n"
        f"ExecStart={quote_exec(lay.argv(squid))}\n"
        # Squid re-reads its configuration on SIGHUP and keeps open connections.
        "ExecReload=/bin/kill -HUP $MAINPID\n"
        "Restart=on-failure\nRestartSec=2s\nLimitNOFILE=65536\n"
        # Its ports are below 1024 so that no workload can bind one first (one closes
        # for a moment at every reconfigure): binding them is all it may do beyond a user.
        "NoNewPrivileges=yes\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"
        "AmbientCapabilities=CAP_NET_BIND_SERVICE\n"
        f"ProtectSystem=strict\nReadWritePaths={quote_exec([str(lay.var)])}\n"
        "ProtectHome=yes\nPrivateTmp=yes\nPrivateDevices=yes\n"
        "ProtectKernelTunables=yes\nProtectKernelModules=yes\nProtectKernelLogs=yes\n"
        "ProtectClock=yes\nProtectHostname=yes\nProtectControlGroups=yes\n"
        "ProtectProc=invisible\nProcSubset=pid\nRestrictNamespaces=yes\n"
        "RestrictRealtime=yes\nRestrictSUIDSGID=yes\nLockPersonality=yes\n"
        "MemoryDenyWriteExecute=yes\nKeyringMode=private\nUMask=0027\nRemoveIPC=yes\n"
        "SystemCallArchitectures=native\nSystemCallFilter=@system-service\n"
        "SystemCallFilter=~@privileged @resources @mount @obsolete @debug\n"
        "SystemCallErrorNumber=EPERM\n"
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\nDevicePolicy=closed\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


def gateway_dropin(box: Box, name: str) -> tuple[str, str] | None:
    spec = box.workloads[name]
    if spec.gateway is None:
        return None
    home = box.home(name)
    text = (
        f"# Written by clawvisor provision for workload {name}.\n"
        "[Service]\n"
        f"DynamicUser=no\nUser={spec.user}\nGroup={spec.user}\n"
        f"WorkingDirectory={box.gateway_home(name)}\n"
        f"Environment=HOME={box.gateway_home(name)}\n"
        # The unit hides every home (ProtectHome=tmpfs); bring back this one alone.
        f"BindPaths={quote_exec([str(home)])}\n"
        "ExecStart=\n"
        f"ExecStart={quote_exec(list(spec.gateway))}\n"
    )
    if spec.internet == "proxy":
        # Its only way out: tools that honour the proxy variables (Node with
        # NODE_USE_ENV_PROXY) go through it; anything else is dropped by the firewall.
        url = f"http://127.0.0.1:{proxy_ports(box)[name]}"
        for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
            text += f"Environment={var}={url}\n"
        text += "Environment=NODE_USE_ENV_PROXY=1\n"
    if spec.overlay is not None:
        text = f"[Unit]\nWants={OVERLAYS_UNIT}\nAfter={OVERLAYS_UNIT}\n\n" + text
    if not resolves(spec):
        # No DNS for it: the firewall drops its queries, and the local resolvers' own
        # sockets are hidden too (systemd-resolved's varlink and D-Bus APIs, nscd), or
        # they would resolve names for it, a tunnel the firewall never sees.
        text += "InaccessiblePaths=-/run/systemd/resolve -/run/nscd -/run/dbus/system_bus_socket\n"
    text += _address_filter(box, name)
    return f"clawvisor-workload@{name}.service.d/10-gateway.conf", text


def _address_filter(box: Box, name: str) -> str:
    """For a workload that may reach only known addresses (`none`, `proxy`): systemd's
    per-unit address filter (cgroup BPF, both directions) as a second wall behind the
    firewall. It is what keeps an unsolicited UDP datagram from the LAN out of the
    gateway's sockets: the firewall drops the answers (nothing leaves on a flow someone
    else opened), but cannot see whose socket an incoming datagram is for."""
    spec = box.workloads[name]
    if spec.internet not in ("none", "proxy"):
        return ""  # its peers are not known in advance (the internet, egress-allow's)
    allow = ["localhost"]
    allow += [svc.rpartition(":")[0].strip("[]") for svc in spec.host_services]
    if resolves(spec):
        allow += resolvers(box)
    for opening in spec.inbound:
        if not opening.sources:
            return ""  # open to anyone: no address filter can say that per port
        allow += opening.sources
    return "IPAddressDeny=any\n" + f"IPAddressAllow={' '.join(dict.fromkeys(allow))}\n"


def daemon_dropin(box: Box) -> tuple[str, str] | None:
    """ReadWritePaths= for what the sandboxed daemon writes outside its own directories:
    the sync-out destinations, and the egress proxy's lists (`egress-allow`)."""
    paths = sorted({spec.destination for spec in box.workloads.values() if spec.destination})
    if proxy_workloads(box):
        paths.append(box.settings.proxy.dir)
    if not paths:
        return None
    lines = "".join(f"ReadWritePaths=-{quote_exec([d])}\n" for d in paths)
    text = f"# Written by clawvisor provision: paths the daemon writes.\n[Service]\n{lines}"
    return "clawvisor.service.d/50-destinations.conf", text


def wanted_units(box: Box) -> dict[str, str]:
    """Every unit file and drop-in (relative path -> content) provisioning installs."""
    files: dict[str, str] = {}
    dropin = daemon_dropin(box)
    if dropin is not None:
        files[dropin[0]] = dropin[1]
    if any(spec.overlay is not None for spec in box.workloads.values()):
        files[OVERLAYS_UNIT] = overlays_unit(box)
    if proxy_workloads(box):
        files[PROXY_UNIT] = proxy_unit(box)
    for name in sorted(box.workloads):
        dropin = gateway_dropin(box, name)
        if dropin is not None:
            files[dropin[0]] = dropin[1]
    return files


def plan_units(box: Box, plan: Plan) -> None:
    """Plan installing and enabling the units (only where systemd runs)."""
    if not SYSTEMD_RUNNING.is_dir():
        plan.skip(
            "units",
            "systemd is not running (no /run/systemd/system): no units "
            "installed or enabled; overlays will not be remounted at boot",
        )
        return
    target = Path(box.settings.provision.unit_dir)
    files = wanted_units(box)
    changed: set[str] = set()
    for rel, text in files.items():
        path = target / rel
        try:
            have = path.read_text()
        except FileNotFoundError:
            have = None
        if have != text:
            plan.add("units", f"write {path}", partial(write_atomic, path, text.encode(), 0o644))
            changed.add(rel)
    for name in sorted(box.workloads):
        legacy = target / legacy_mount_unit(box, name)
        if legacy.exists():
            plan.add("units", f"remove {legacy} (superseded by {OVERLAYS_UNIT})", legacy.unlink)
            changed.add(legacy.name)
    if changed:
        plan.add("units", "systemctl daemon-reload", partial(run, ["systemctl", "daemon-reload"]))
    if OVERLAYS_UNIT in changed:
        enable = ["systemctl", "enable", OVERLAYS_UNIT]
        plan.add("units", f"enable {OVERLAYS_UNIT}", partial(run, enable))
    if PROXY_UNIT in changed:
        plan.add("units", f"enable {PROXY_UNIT}", partial(run, ["systemctl", "enable", PROXY_UNIT]))
        restart = ["systemctl", "restart", PROXY_UNIT]
        plan.add("units", f"(re)start {PROXY_UNIT} on its new unit file", partial(run, restart))
    dropin = daemon_dropin(box)
    if dropin is not None and dropin[0] in changed:
        # A path made writable in the daemon's sandbox takes effect only when it starts.
        restart = ["systemctl", "try-restart", "clawvisor.service"]
        plan.add("units", "restart clawvisor.service, if running, for its new writable paths",
                 partial(run, restart))  # fmt: skip
