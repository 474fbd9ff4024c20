"""`clawvisor fleet certs`: a small CA and its certificates, with openssl (argv only).

DIR/ca.pem and ca.key (0600: keep it offline once the fleet is set up), a server
certificate for the collector (its name and addresses as subjectAltNames, which
journal-upload checks), and one client certificate per VM (CN = the VM's name). Run it
again with a new VM's name to add one; the CA is reused. Rotation: make new
certificates before the old ones expire (`--days`), install them, restart
journal-upload on each VM; to retire the CA, make a new DIR and roll every VM over.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from pathlib import Path

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")


def _openssl(*argv: str) -> None:
    subprocess.run(["openssl", *argv], check=True, capture_output=True, text=True)


def _san(names: list[str]) -> str:
    out = []
    for n in names:
        try:
            ipaddress.ip_address(n)
            out.append(f"IP:{n}")
        except ValueError:
            out.append(f"DNS:{n}")
    return ",".join(out)


def ensure_ca(directory: Path, days: int = 3650) -> tuple[Path, Path]:
    """The fleet's CA (made on first use): (certificate, key)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert, key = directory / "ca.pem", directory / "ca.key"
    if not cert.exists():
        _openssl("req", "-x509", "-newkey", "rsa:3072", "-nodes", "-days", str(days),
                 "-subj", "/CN=clawvisor fleet CA", "-keyout", str(key), "-out", str(cert),
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
        os.chmod(key, 0o600)
    return cert, key


def issue(directory: Path, name: str, *, server_names: list[str] | None = None,
          days: int = 825) -> tuple[Path, Path]:  # fmt: skip
    """A certificate signed by the fleet's CA: a server's (with `server_names`) or a
    VM's client certificate; (certificate, key)."""
    if not NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a host name")
    ca, ca_key = ensure_ca(directory)
    cert, key, csr = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    usage = "serverAuth" if server_names else "clientAuth"
    lines = [f"extendedKeyUsage={usage}", "keyUsage=critical,digitalSignature,keyEncipherment"]
    if server_names:
        lines.append(f"subjectAltName={_san(server_names)}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
             "-keyout", str(key), "-out", str(csr))  # fmt: skip
    os.chmod(key, 0o600)
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", str(days), "-extfile", str(ext),
             "-out", str(cert))  # fmt: skip
    csr.unlink()
    ext.unlink()
    return cert, key
