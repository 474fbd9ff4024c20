"""The two sides of the trail's shipping, as command lines and units: systemd-journal-upload
on each VM (the trail's namespace journal, to the collector, with the VM's client
certificate) and, on the collector, systemd-journal-remote behind stunnel.

Debian 12 builds systemd-journal-remote without GnuTLS (`-GNUTLS` in its --version), and
so without `--trust`: it cannot check a client's certificate. The collector's TLS is
therefore stunnel's (a maintained TLS wrapper, OpenSSL): it requires a client
certificate signed by the fleet's CA (`requireCert`, `verifyChain`) and hands the
connection to journal-remote, which listens for plain HTTP on loopback only. A VM without
such a certificate never reaches journal-remote."""

from __future__ import annotations

from pathlib import Path

REMOTE = "/lib/systemd/systemd-journal-remote"
UPLOAD = "/lib/systemd/systemd-journal-upload"


STUNNEL = "/usr/bin/stunnel4"


def remote_argv(inner: str, output: Path) -> list[str]:
    """journal-remote on loopback plain HTTP (`inner`, ADDRESS:PORT), one file per host."""
    return [REMOTE, f"--listen-http={inner}", f"--output={output}/", "--split-mode=host"]


def tls_config(listen: str, inner: str, certs: Path, name: str) -> str:
    """stunnel's configuration: TLS on `listen`, fleet client certificates only."""
    return (
        "; Written by clawvisor fleet collector.\nforeground = yes\npid =\n"
        "[clawvisor-trail]\n"
        f"accept = {listen}\nconnect = {inner}\n"
        f"cert = {certs / f'{name}.pem'}\nkey = {certs / f'{name}.key'}\n"
        f"CAfile = {certs / 'ca.pem'}\nrequireCert = yes\nverifyChain = yes\n"
        "sslVersionMin = TLSv1.2\n"
    )


def upload_argv(url: str, certs: Path, vm: str, journal_dir: Path, state: Path) -> list[str]:
    """journal-upload of the trail's journal directory, following it, resuming at the
    last cursor the collector took."""
    return [
        UPLOAD,
        f"--url={url}",
        f"--key={certs / f'{vm}.key'}",
        f"--cert={certs / f'{vm}.pem'}",
        f"--trust={certs / 'ca.pem'}",
        f"--directory={journal_dir}",
        f"--save-state={state}",
        "--follow",
    ]


def quote(argv: list[str]) -> str:
    return " ".join(f'"{a}"' for a in argv)


def collector_units(inner: str, output: Path, tls: Path) -> dict[str, str]:
    """The collector's two units: journal-remote (loopback) and stunnel in front of it."""
    return {
        "clawvisor-fleet-collector.service": _remote_unit(inner, output),
        "clawvisor-fleet-tls.service": (
            "# Written by clawvisor fleet collector.\n[Unit]\n"
            "Description=clawvisor fleet collector's TLS (stunnel: fleet client certs only)\n"
            "Requires=clawvisor-fleet-collector.service\n"
            "After=clawvisor-fleet-collector.service network-online.target\n\n"
            f"[Service]\nDynamicUser=yes\nExecStart={quote([STUNNEL, str(tls)])}\n"
            "ProtectSystem=strict\nProtectHome=yes\nPrivateTmp=yes\nPrivateDevices=yes\n"
            "NoNewPrivileges=yes\nCapabilityBoundingSet=\nRestrictNamespaces=yes\n"
            "LockPersonality=yes\nMemoryDenyWriteExecute=yes\nSystemCallArchitectures=native\n"
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\nRestart=on-failure\n\n"
            "[Install]\nWantedBy=multi-user.target\n"
        ),
    }


def _remote_unit(inner: str, output: Path) -> str:
    return (
        "# Written by clawvisor fleet collector.\n[Unit]\n"
        "Description=clawvisor fleet collector (systemd-journal-remote, loopback only)\n"
        "After=network-online.target\nWants=network-online.target\n\n"
        "[Service]\nUser=systemd-journal-remote\nGroup=systemd-journal-remote\n"
        f"ExecStart={quote(remote_argv(inner, output))}\n"
        f"ReadWritePaths={output}\nProtectSystem=strict\nProtectHome=yes\nPrivateTmp=yes\n"
        "PrivateDevices=yes\nNoNewPrivileges=yes\nCapabilityBoundingSet=\n"
        "ProtectKernelTunables=yes\nProtectKernelModules=yes\nProtectControlGroups=yes\n"
        "RestrictNamespaces=yes\nLockPersonality=yes\nMemoryDenyWriteExecute=yes\n"
        "SystemCallArchitectures=native\nSystemCallFilter=@system-service\n"
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\nRestart=on-failure\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


def upload_unit(url: str, certs: Path, vm: str, journal_dir: Path, state: Path) -> str:
    return (
        "# Written by clawvisor provision ([fleet] collector).\n[Unit]\n"
        "Description=clawvisor trail upload to the fleet's collector (systemd-journal-upload)\n"
        "After=network-online.target\nWants=network-online.target\n\n"
        "[Service]\nDynamicUser=yes\nSupplementaryGroups=systemd-journal\n"
        f"StateDirectory=clawvisor-upload\n"
        f"ExecStart={quote(upload_argv(url, certs, vm, journal_dir, state))}\n"
        "ProtectSystem=strict\nProtectHome=yes\nPrivateTmp=yes\nPrivateDevices=yes\n"
        "NoNewPrivileges=yes\nCapabilityBoundingSet=\nRestrictNamespaces=yes\n"
        "LockPersonality=yes\nMemoryDenyWriteExecute=yes\nSystemCallArchitectures=native\n"
        "SystemCallFilter=@system-service\nRestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n"
        "Restart=always\nRestartSec=10s\n\n[Install]\nWantedBy=multi-user.target\n"
    )
