"""squid.conf for the workloads' egress (pure: data in, file contents out).

One `http_port` on 127.0.0.1 per workload (`myportname` says whose request it is: the
firewall lets only that workload's uid reach it). A request is allowed only for a
(domain, port) on that workload's list; IP literals are refused, and so is a name any of
whose addresses is private, loopback, link-local, CGNAT, ULA or metadata (the `dst` ACL;
the proxy user's own nftables chain drops such packets too, so a rebinding answer that
changes between the check and the connect still goes nowhere). HTTPS is never
intercepted: Squid peeks at the ClientHello and splices only when the CONNECT's host and
the SNI are the same entry of the workload's list (one `ssl_bump splice` line per
entry, matching both: a client cannot CONNECT to one allowed name and ask the server
behind it for another; under a `.wildcard` entry, any two names under it; a ClientHello
without SNI is judged by the CONNECT's host, and goes only to that name's address);
anything else, no match or not TLS at all, is terminated. No helper process is run: Squid talks to
its helpers over loopback TCP, which the proxy user's firewall chain drops. `tls-cert`
is required by Squid on an `ssl-bump` port; it signs nothing, as nothing is ever bumped
(a refused CONNECT is terminated at the first step, before Squid would bump it to show
its error page).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: Never reachable through the proxy, whatever a name resolves to.
REFUSED_NETS = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)
#: Every field a client can put text into is URL-escaped (`%#`): an SNI holding a newline
#: or a space would otherwise forge a line (another workload's request) or break one.
LOGFORMAT = "%ts.%03tu %>lp %#rm %#>rd %>rP %>st %<st %Ss %>Hs %#ssl::>sni %<a %#ssl::bump_mode"


@dataclass(frozen=True)
class ProxyLayout:
    """Where the proxy's files are: `dir` (root's: config, lists) and `var` (the proxy's)."""

    dir: Path

    @property
    def conf(self) -> Path:
        return self.dir / "squid.conf"

    @property
    def lists(self) -> Path:
        return self.dir / "allow"

    @property
    def cert(self) -> Path:
        return self.dir / "port.pem"

    @property
    def var(self) -> Path:
        return self.dir / "var"

    @property
    def access_log(self) -> Path:
        return self.var / "access.log"

    @property
    def pid_file(self) -> Path:
        return self.var / "squid.pid"

    @property
    def cache_log(self) -> Path:
        return self.var / "cache.log"

    @property
    def service(self) -> str:
        """Squid's `-n` service name: it prefixes its shared memory segments, which
        would collide with another Squid's (Debian's own, a test's) under the default."""
        return "cvproxy" + hashlib.sha256(str(self.dir).encode()).hexdigest()[:12]

    def argv(self, squid: str) -> list[str]:
        """How Squid is run in the foreground on this configuration."""
        return [squid, "-N", "-n", self.service, "-f", str(self.conf)]


def minimal(domains: Iterable[str]) -> list[str]:
    """Drop names a `.wildcard` on the list already covers (Squid warns on overlaps)."""
    names = sorted(set(domains))
    wild = {d[1:] for d in names if d.startswith(".")}

    def covered(d: str) -> bool:
        bare = d.lstrip(".")
        parts = bare.split(".")
        parents = {".".join(parts[i:]) for i in range(1, len(parts))}
        return (not d.startswith(".") and bare in wild) or bool(parents & wild)

    return [d for d in names if not covered(d)]


def _slug(name: str) -> str:
    return name.replace("-", "_")


def render(
    layout: ProxyLayout,
    ports: Mapping[str, int],
    allows: Mapping[str, list[tuple[str, int]]],
    resolvers: list[str],
    refused: list[str],
) -> dict[Path, str]:
    """Every file of the proxy's configuration: squid.conf and one list per workload and
    port."""
    parsed = [ipaddress.ip_network(n, strict=False) for n in (*REFUSED_NETS, *refused)]
    # The same IPv4 networks inside the NAT64 prefix (RFC 6052): a name answering
    # 64:ff9b::c0a8:101 reaches 192.168.1.1 on a network with NAT64.
    nat64 = int(ipaddress.IPv6Address("64:ff9b::"))
    parsed += [
        ipaddress.IPv6Network((nat64 + int(n.network_address), 96 + n.prefixlen))
        for n in list(parsed)
        if isinstance(n, ipaddress.IPv4Network)
    ]
    # Squid ignores (with a warning) a network inside another: give it each once.
    v4 = [n for n in parsed if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in parsed if isinstance(n, ipaddress.IPv6Network)]
    nets = [str(n) for n in ipaddress.collapse_addresses(v4)]
    nets += [str(n) for n in ipaddress.collapse_addresses(v6)]
    files: dict[Path, str] = {}
    head = [
        "# Written by clawvisor (supervisor/proxy/squid_conf.py); provisioning rewrites it.",
        f"pid_filename {layout.pid_file}",
        f"cache_log stdio:{layout.cache_log}",
        f"logformat clawvisor {LOGFORMAT}",
        f"access_log stdio:{layout.access_log} logformat=clawvisor",
        "logfile_rotate 0",
        f"coredump_dir {layout.var}",
        "cache deny all",
        "cache_mem 8 MB",
        "netdb_filename none",
        "pinger_enable off",  # its ICMP helper talks over loopback, which the proxy may not
        "visible_hostname clawvisor-proxy",
        "via off",
        "forwarded_for delete",
        "httpd_suppress_version_string on",
        "shutdown_lifetime 2 seconds",
        "client_persistent_connections on",
        "cachemgr_passwd disable all",
        # A workload holding idle connections must not hold the others' share for long.
        "request_start_timeout 30 seconds",
        "client_idle_pconn_timeout 30 seconds",
        f"dns_nameservers {' '.join(resolvers)}" if resolvers else "",
    ]
    acls = [
        "acl http_proto proto HTTP",
        "acl step1 at_step SslBump1",
        "acl step2 at_step SslBump2",
        "acl CONNECT method CONNECT",
        f"acl ip_literal url_regex -i {IP_LITERAL}",
        f"acl refused_dst dst {' '.join(nets)}",
    ]
    ports_lines: list[str] = []
    # CONNECTs (but to an address) are judged by ssl_bump, not http_access: one that
    # http_access refuses is answered 200 and bumped by Squid to show its error page
    # over TLS, with the port's certificate; terminated at step 1, it never is.
    connects: list[str] = []
    plain: list[str] = []  # plain-HTTP requests (GET http://NAME/...), by http_access
    # `refused_dst` resolves the name: it is asked only after the name matched the
    # workload's list (Squid stops at the first ACL of a line that does not match), or
    # any name at all would leave through the resolver (a DNS tunnel through the proxy).
    peeks = ["ssl_bump terminate step1 ip_literal"]
    splices: list[str] = []
    used = sorted({port for mine in allows.values() for _, port in mine})
    acls += [f"acl port_{p} port {p}" for p in used]
    for name in sorted(ports):
        s = _slug(name)
        ports_lines.append(
            f"http_port 127.0.0.1:{ports[name]} name=wl_{s} ssl-bump tls-cert={layout.cert} "
            "generate-host-certificates=off"
        )
        acls.append(f"acl wl_{s} myportname wl_{s}")
        connects.append(f"http_access allow CONNECT wl_{s}")
        mine = allows.get(name, [])
        by_port: dict[int, list[str]] = {}
        for domain, port in mine:
            by_port.setdefault(port, []).append(domain)
        for port in sorted(by_port):
            path = layout.lists / f"{name}.{port}"
            files[path] = "".join(f"{d}\n" for d in minimal(by_port[port]))
            acls.append(f'acl wl_{s}_p{port} dstdomain -n "{path}"')
            plain.append(
                f"http_access allow wl_{s} !CONNECT http_proto port_{port} wl_{s}_p{port} "
                "!refused_dst"
            )
            peeks.append(f"ssl_bump peek step1 wl_{s} port_{port} wl_{s}_p{port} !refused_dst")
        for i, domain in enumerate(minimal(d for d, _ in mine)):
            acls += [
                f"acl wl_{s}_h{i} dstdomain -n {domain}",
                f"acl wl_{s}_s{i} ssl::server_name --client-requested {domain}",
            ]
            splices.append(f"ssl_bump splice step2 wl_{s} wl_{s}_h{i} wl_{s}_s{i}")
    out = [
        *head,
        *acls,
        *ports_lines,
        # Squid's cache manager (cache_object://, /squid-internal-mgr/) would show every
        # workload's names and connections to any of them.
        "http_access deny manager",
        "http_access deny ip_literal",
        *connects,
        *plain,
        "http_access deny all",
        *peeks,
        *splices,
        "ssl_bump terminate all",
        # A refusal resets the connection rather than answering with an error page.
        *(f"deny_info TCP_RESET {acl}" for acl in ("ip_literal", "refused_dst", "all")),
    ]
    files[layout.conf] = "\n".join(line for line in out if line) + "\n"
    return files


#: A request URL (`host:port` for a CONNECT) whose host is an address, not a name: IPv6
#: in brackets, dotted or bare IPv4 in any base inet_aton takes (`3325256724`, `0xC6.0x33`).
#: A `url_regex`: `dstdom_regex -n` never sees an address (Squid declares a mismatch).
IP_LITERAL = (
    r"^([a-z][a-z0-9+.-]*://)?([^/@]*@)?"
    r"(\[[0-9a-f:.]*\]|(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?)(:[0-9]*)?(/.*)?$"
)
