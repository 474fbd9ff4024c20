"""Two network namespaces joined by a veth pair (pyroute2), with real listeners on one side.

    workloads side (ws):  cv0 192.168.77.2/24, default via 192.168.77.1
    hosts side (hs):      cv1 192.168.77.1/24  (the "LAN" host and the gateway)
                          169.254.169.254/32   (the metadata address)
                          203.0.113.10/32      (an "internet" host, not allowlisted)
                          198.51.100.20/32     (an allowlisted host)

Nothing is done in the root network namespace; everything is removed afterwards.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

LAN_HOST = "192.168.77.1"
METADATA = "169.254.169.254"
INTERNET = "203.0.113.10"
ALLOWED = "198.51.100.20"
#: A model server on the LAN, for workloads' host_services.
SERVICE_PORT = 11434
LISTEN = [
    f"{LAN_HOST}:80",
    f"{LAN_HOST}:{SERVICE_PORT}",
    f"{METADATA}:80",
    f"{INTERNET}:443",
    f"{ALLOWED}:8080",
]
HERE = Path(__file__).resolve().parent


@dataclass
class Lab:
    ws: str
    hs: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def exec(self, *argv: str) -> list[str]:
        """argv prefixed to run inside the workloads' network namespace only.

        (`ip netns exec` would also give the command a private mount namespace, and
        the mounts provisioning makes would vanish with it.)
        """
        return ["nsenter", f"--net=/run/netns/{self.ws}", "--", *argv]

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        for ns in (self.ws, self.hs):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def make_lab() -> Lab:
    from pyroute2 import NetNS, netns

    tag = secrets.token_hex(3)
    lab = Lab(ws=f"cvtws{tag}", hs=f"cvths{tag}")
    netns.create(lab.ws)
    netns.create(lab.hs)
    try:
        with NetNS(lab.ws) as ws:
            ws.link("add", ifname="cv0", kind="veth", peer={"ifname": "cv1", "net_ns_fd": lab.hs})
            lo = ws.link_lookup(ifname="lo")[0]
            cv0 = ws.link_lookup(ifname="cv0")[0]
            ws.link("set", index=lo, state="up")
            ws.addr("add", index=cv0, address="192.168.77.2", prefixlen=24)
            ws.link("set", index=cv0, state="up")
            ws.route("add", dst="default", gateway=LAN_HOST)
        with NetNS(lab.hs) as hs:
            lo = hs.link_lookup(ifname="lo")[0]
            cv1 = hs.link_lookup(ifname="cv1")[0]
            hs.link("set", index=lo, state="up")
            hs.addr("add", index=cv1, address=LAN_HOST, prefixlen=24)
            for extra in (METADATA, INTERNET, ALLOWED):
                hs.addr("add", index=cv1, address=extra, prefixlen=32)
            hs.link("set", index=cv1, state="up")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.hs, sys.executable, str(HERE / "listeners.py"), *LISTEN],
            stdout=subprocess.PIPE,
            text=True,
        )
        lab.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    except BaseException:
        lab.close()
        raise
    return lab
