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


#: The sandbox all three units share: no privileges, no devices, no kernel knobs, no home,
#: a read-only system, only the network families they use. Not ProcSubset=pid: journal
#: files are stamped with /proc/sys/kernel/random/boot_id (journal-remote fails ENOENT).
HARDENING = (
    "ProtectSystem=strict\nProtectHome=yes\nPrivateTmp=yes\nPrivateDevices=yes\n"
    "NoNewPrivileges=yes\nCapabilityBoundingSet=\nAmbientCapabilities=\n"
    "RestrictNamespaces=yes\nProtectKernelTunables=yes\nProtectKernelModules=yes\n"
    "ProtectKernelLogs=yes\nProtectControlGroups=yes\nProtectClock=yes\n"
    "ProtectHostname=yes\nProtectProc=invisible\nRestrictRealtime=yes\n"
    "RestrictSUIDSGID=yes\nLockPersonality=yes\nMemoryDenyWriteExecute=yes\n"
    "KeyringMode=private\nRemoveIPC=yes\nUMask=0077\nDevicePolicy=closed\n"
    "SystemCallArchitectures=native\nSystemCallFilter=@system-service\n"
    "SystemCallFilter=~@privileged @resources @mount @obsolete @debug\n"
    "SystemCallErrorNumber=EPERM\nRestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n"
)


def quote(argv: list[str]) -> str:
    return " ".join(f'"{a}"' for a in argv)


TLS_UNIT = "clawvisor-fleet-tls.service"
#: Where systemd puts the TLS unit's credentials (LoadCredential=): its key stays root's.
TLS_CREDENTIALS = Path("/run/credentials") / TLS_UNIT


def collector_units(inner: str, output: Path, certs: Path, name: str) -> dict[str, str]:
    """The collector's two units: journal-remote (loopback) and stunnel in front of it,
    stunnel a dynamic user handed its configuration, certificate and key as credentials
    (`certs/stunnel.conf` must name them under TLS_CREDENTIALS)."""
    creds = "".join(
        f"LoadCredential={n}:{certs / n}\n"
        for n in ("stunnel.conf", "ca.pem", f"{name}.pem", f"{name}.key")
    )
    return {
        "clawvisor-fleet-collector.service": _remote_unit(inner, output),
        TLS_UNIT: (
            "# Written by clawvisor fleet collector.\n[Unit]\n"
            "Description=clawvisor fleet collector's TLS (stunnel: fleet client certs only)\n"
            "Requires=clawvisor-fleet-collector.service\n"
            "After=clawvisor-fleet-collector.service network-online.target\n\n"
            f"[Service]\nDynamicUser=yes\n{creds}"
            f"ExecStart={quote([STUNNEL, '%d/stunnel.conf'])}\n{HARDENING}"
            "Restart=on-failure\n\n"
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
        f"ReadWritePaths={output}\n{HARDENING}Restart=on-failure\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


UPLOAD_UNIT = "clawvisor-fleet-upload.service"
UPLOAD_STATE = Path("/var/lib/clawvisor-upload/state")


def trail_directory(namespace: str, machine_id: str) -> Path:
    """Where journald keeps the trail's namespace (Storage=persistent in its config)."""
    return Path("/var/log/journal") / (f"{machine_id}.{namespace}" if namespace else machine_id)


def upload_unit(url: str, certs: Path, vm: str, journal_dir: Path, namespace: str) -> str:
    """journal-upload as a dynamic user that can read journals and nothing else of root's:
    the key reaches it as a systemd credential (`%d`), so it stays 0600 root's on disk.
    It pulls in the namespace's journald, which makes the directory before the daemon's
    first record (socket activation may not have started the daemon yet)."""
    journald = f"systemd-journald@{namespace}.service" if namespace else "systemd-journald.service"
    creds = "".join(
        f"LoadCredential={name}:{certs / name}\n" for name in ("ca.pem", f"{vm}.pem", f"{vm}.key")
    )
    argv = upload_argv(url, Path("%d"), vm, journal_dir, UPLOAD_STATE)
    return (
        "# Written by clawvisor provision ([fleet] collector).\n[Unit]\n"
        "Description=clawvisor trail upload to the fleet's collector (systemd-journal-upload)\n"
        f"After=network-online.target {journald}\nWants=network-online.target {journald}\n\n"
        "[Service]\nDynamicUser=yes\nSupplementaryGroups=systemd-journal\n"
        f"StateDirectory=clawvisor-upload\n{creds}"
        f"ExecStart={quote(argv)}\n{HARDENING}"
        # Never gives up: a collector down for a day is caught up from the saved cursor.
        "Restart=always\nRestartSec=10s\n\n[Install]\nWantedBy=multi-user.target\n"
    )
