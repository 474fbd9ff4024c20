"""One negative (or positive) probe, run by `clawvisor verify` as a workload's user.

    python -m supervisor.provision.probe KIND ARGS...

Prints one JSON object: {"outcome": "...", "detail": "..."}. The outcome is an errno
name (EPERM, EACCES, ...), "ok", "connected", "refused", "timeout", "missing", or
"exit N". It never raises: a probe that cannot run says so in its outcome.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable


def _errno(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def connect(address: str, port: str, timeout: str = "3") -> tuple[str, str]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(float(timeout))
    try:
        s.connect((address, int(port)))
    except TimeoutError:
        return "timeout", f"no answer in {timeout} s"
    except ConnectionRefusedError:
        return "refused", "the destination answered with a reset"
    except OSError as exc:
        return _errno(exc), exc.strerror or ""
    finally:
        s.close()
    return "connected", ""


#: A DNS query for A of clawvisor-verify.invalid (RFC 1035 wire format, id 0x4356).
DNS_QUERY = (
    b"\x43\x56\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    b"\x10clawvisor-verify\x07invalid\x00\x00\x01\x00\x01"
)


def dns(address: str, port: str = "53", timeout: str = "3") -> tuple[str, str]:
    """One DNS query over UDP: `answered`, or why not (EPERM when dropped in this host)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(float(timeout))
    try:
        s.sendto(DNS_QUERY, (address, int(port)))
        s.recv(512)
    except TimeoutError:
        return "timeout", f"no answer in {timeout} s"
    except OSError as exc:
        return _errno(exc), exc.strerror or ""
    finally:
        s.close()
    return "answered", ""


def listen(timeout: str = "4") -> tuple[str, str]:
    """Listen on a loopback port, say which on a line of its own, and wait for someone to
    connect: `accepted`, or `timeout` (what an inbound drop gives the caller)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    print(json.dumps({"port": s.getsockname()[1]}), flush=True)
    s.settimeout(float(timeout))
    try:
        conn, _ = s.accept()
        conn.close()
    except TimeoutError:
        return "timeout", f"nobody connected in {timeout} s"
    finally:
        s.close()
    return "accepted", ""


def listdir(path: str) -> tuple[str, str]:
    try:
        return "ok", f"{len(os.listdir(path))} entries"
    except OSError as exc:
        return _errno(exc), exc.strerror or ""


def read(path: str) -> tuple[str, str]:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        return _errno(exc), exc.strerror or ""
    return "ok", ""


def write(path: str) -> tuple[str, str]:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        return _errno(exc), exc.strerror or ""
    os.close(fd)
    return "ok", "opened for writing"


def rename(src: str, dst: str) -> tuple[str, str]:
    try:
        os.rename(src, dst)
    except OSError as exc:
        return _errno(exc), exc.strerror or ""
    os.rename(dst, src)  # put it back: this was a probe
    return "ok", "renamed (and put back)"


def run(*argv: str) -> tuple[str, str]:
    try:
        out = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=20,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        return "missing", f"{argv[0]} is not installed"
    except subprocess.TimeoutExpired:
        return "timeout", ""
    return f"exit {out.returncode}", (out.stdout + out.stderr).strip()[:200]


def unix(path: str, line: str) -> tuple[str, str]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(path)
        s.sendall(line.encode() + b"\n")
        reply = s.recv(65536).split(b"\n", 1)[0]
    except OSError as exc:
        return _errno(exc), exc.strerror or ""
    finally:
        s.close()
    return ("reply", reply.decode("utf-8", "replace")[:300]) if reply else ("closed", "")


def proxy(port: str, target: str, sni: str, timeout: str = "5") -> tuple[str, str]:
    """CONNECT `target` through the egress proxy's port on 127.0.0.1, then a TLS
    handshake with `sni` (the certificate is not checked: only whether a server answers).
    `tls` (the handshake completed), `refused` (the CONNECT got no 200), `terminated`
    (the proxy closed the tunnel), or why the proxy could not be reached."""
    import ssl

    try:
        s = socket.create_connection(("127.0.0.1", int(port)), timeout=float(timeout))
    except TimeoutError:
        return "timeout", f"the proxy did not answer in {timeout} s"
    except OSError as exc:
        return _errno(exc), exc.strerror or ""
    try:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        try:
            head = s.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
        except ConnectionResetError:
            return "refused", "the proxy reset the connection"
        if " 200 " not in f"{head} ":
            return "refused", head[:100] or "the proxy closed the connection"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with ctx.wrap_socket(s, server_hostname=sni) as tls:
                return "tls", f"{tls.version()} with {target} (SNI {sni})"
        except (ssl.SSLError, OSError) as exc:
            return "terminated", type(exc).__name__
    except OSError as exc:
        return _errno(exc), exc.strerror or ""
    finally:
        s.close()


def resolve(server: str, name: str, timeout: str = "3") -> tuple[str, str]:
    """An A query for `name` to the resolver `server`: `answered` with the first address."""
    qname = b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.split(".")) + b"\0"
    query = b"\x43\x57\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + qname + b"\0\1\0\1"
    s = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(float(timeout))
    try:
        s.sendto(query, (server, 53))
        reply = s.recv(4096)
    except TimeoutError:
        return "timeout", f"no answer in {timeout} s"
    except OSError as exc:
        return _errno(exc), exc.strerror or ""
    finally:
        s.close()
    i = len(query)  # the question is echoed; answers follow
    for _ in range(int.from_bytes(reply[6:8], "big")):
        if reply[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while reply[i]:
                i += reply[i] + 1
            i += 1
        rtype, rdlen = (
            int.from_bytes(reply[i : i + 2], "big"),
            int.from_bytes(reply[i + 8 : i + 10], "big"),
        )
        if rtype == 1 and rdlen == 4:
            return "answered", ".".join(str(b) for b in reply[i + 10 : i + 14])
        i += 10 + rdlen
    return "no-address", f"{name}: no A record"


PROBES: dict[str, Callable[..., tuple[str, str]]] = {
    "resolve": resolve,
    "proxy": proxy,
    "connect": connect,
    "dns": dns,
    "listen": listen,
    "list": listdir,
    "read": read,
    "write": write,
    "rename": rename,
    "run": run,
    "unix": unix,
}


def main() -> None:
    kind, *args = sys.argv[1:]
    outcome, detail = PROBES[kind](*args)
    print(json.dumps({"outcome": outcome, "detail": detail}))


if __name__ == "__main__":
    main()
